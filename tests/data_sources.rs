//! The tenants' data sources through the gateway (`/api/v1/data-sources`), registered by
//! desktop-state's Database adapter with the real MindsDB 26.1: the machine's Postgres
//! (127.0.0.1:5432) and MariaDB (127.0.0.1:3306, set up with the `mysql` client). Then used by
//! name: an agent lists `ds_<name>.<table>` in its data, a workflow `sql` node reads it.
//!
//! MySQL and MariaDB need MindsDB's `mysql` handler (`mindsdb[mysql]`); a MindsDB without it
//! answers 501, and the MariaDB test then stops there with a note, unless
//! `GETLOOD_TEST_REQUIRE_MYSQL=1` makes that a failure.

use std::time::{Duration, Instant};

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::call_json;
use crate::desktop_ws::unique_tenant;

struct World {
    platform: Platform,
    http: reqwest::Client,
    base: String,
}

impl World {
    async fn start(services: &[Service]) -> anyhow::Result<Self> {
        let mut builder = Platform::builder().service(Service::DesktopState).service(Service::Gateway);
        for s in services {
            builder = builder.service(*s);
        }
        let platform = builder.start().await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let base = platform.http_url(Service::Gateway);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { platform, http, base })
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        call_json(&self.http, method, &format!("{}{path}", self.base), token, body).await
    }
}

/// `(status, code, message)` of an error answer.
fn error_of(answer: &(u16, Value)) -> (u16, String, String) {
    let (status, body) = answer;
    (
        *status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A private schema of the test Postgres with an `orders` table, dropped by [`PgData::drop`].
struct PgData {
    pool: sqlx::PgPool,
    schema: String,
}

impl PgData {
    async fn create(tag: &str) -> anyhow::Result<Self> {
        let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
        let schema = format!("dsrc_{tag}_{}", &uuid_hex()[..10]);
        for stmt in [
            format!("CREATE SCHEMA \"{schema}\""),
            format!("CREATE TABLE \"{schema}\".orders (id int PRIMARY KEY, item text, amount numeric(10,2))"),
            format!("INSERT INTO \"{schema}\".orders VALUES (1, 'apple', 1.50), (2, 'pear', 2.25)"),
            format!("CREATE TABLE \"{schema}\".notes (id int, body text)"),
            format!("INSERT INTO \"{schema}\".notes VALUES (1, repeat('n', 5000))"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&pool).await?;
        }
        Ok(Self { pool, schema })
    }

    async fn drop(self) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn uuid_hex() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

fn pg_body(name: &str, schema: &str, password: &str) -> Value {
    json!({"name": name, "engine": "postgres",
        "connection": {"host": "127.0.0.1", "port": 5432, "database": "test", "user": "postgres", "password": password, "schema": schema}})
}

/// Every text the tenant can read about its data sources, to look for a leaked secret in.
async fn everything_readable(w: &World, token: &str, name: &str) -> anyhow::Result<String> {
    let mut all = String::new();
    for path in [
        "/api/v1/data-sources".to_owned(),
        format!("/api/v1/data-sources/{name}"),
        format!("/api/v1/data-sources/{name}/tables"),
    ] {
        let (_, body) = w.call("GET", &path, token, None).await?;
        all.push_str(&body.to_string());
    }
    let (_, body) = w.call("POST", &format!("/api/v1/data-sources/{name}/test"), token, None).await?;
    all.push_str(&body.to_string());
    Ok(all)
}

#[tokio::test]
async fn postgres_data_source_lifecycle_bounds_and_isolation() -> anyhow::Result<()> {
    let w = World::start(&[]).await?;
    let pg = PgData::create("pg").await?;
    let tenant = unique_tenant("dsrc");
    let builder = w.platform.token(&tenant, "bianca", &["builder"]);
    let viewer = w.platform.token(&tenant, "victor", &["viewer"]);
    let member = w.platform.token(&tenant, "mia", &["member"]);
    let other = w.platform.token(&unique_tenant("dsrcx"), "mallory", &["admin"]);
    let password = format!("pw-{}", uuid_hex());

    let (status, list) = w.call("GET", "/api/v1/data-sources", &viewer, None).await?;
    assert_eq!((status, list["data_sources"].clone()), (200, json!([])), "{list}");

    // Bad input: 400 naming the field, never a value; nothing registered.
    let secret_port =
        json!({"name": "sales", "engine": "postgres", "connection": {"host": "127.0.0.1", "port": password.clone()}});
    for (body, want) in [
        (
            json!({"name": "Sales", "engine": "postgres", "connection": {"host": "h", "database": "d", "user": "u"}}),
            "data source name 'Sales' is invalid",
        ),
        (json!({"name": "sales", "engine": "oracle", "connection": {}}), "engine must be postgres, mysql or mariadb"),
        (json!({"name": "sales", "engine": "postgres"}), "connection is required"),
        (
            json!({"name": "sales", "engine": "postgres", "connection": {"host": "127.0.0.1", "database": "test"}}),
            "connection.user is required",
        ),
        (
            json!({"name": "sales", "engine": "postgres", "connection": {"host": "127.0.0.1", "port": 70000}}),
            "connection.port must be between 1 and 65535",
        ),
        (secret_port, "connection.port must be a number"),
        (
            json!({"name": "sales", "engine": "mysql", "connection": {"host": "127.0.0.1", "database": "test", "user": "root"}}),
            "connection.password is required for mysql",
        ),
        (
            json!({"name": "sales", "engine": "mariadb", "connection": {"host": "127.0.0.1", "database": "test", "user": "u", "password": "p", "schema": "public"}}),
            "connection.schema is for postgres only",
        ),
        (
            json!({"name": "sales", "engine": "postgres", "connection": {"host": "http://127.0.0.1/", "database": "test", "user": "u"}}),
            "connection.host must be a host name or an IP address",
        ),
        (
            json!({"name": "sales", "engine": "postgres", "connection": {"host": "127.0.0.1", "database": "test", "user": "u", "passwd": password}}),
            "unknown field connection.passwd",
        ),
        // Nothing listens on port 9: MindsDB's check fails, and nothing is created.
        (
            json!({"name": "sales", "engine": "postgres", "connection": {"host": "127.0.0.1", "port": 9, "database": "test", "user": "postgres", "password": password}}),
            "cannot connect to the database: nothing accepts connections at that host and port",
        ),
    ] {
        let answer = w.call("POST", "/api/v1/data-sources", &builder, Some(body.clone())).await?;
        let (status, code, message) = error_of(&answer);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{body}: {message}");
        assert!(message.contains(want), "{body}: {message}");
        assert!(!answer.1.to_string().contains(&password), "{message}");
    }
    // The cloud metadata address, in any disguise: refused by the egress policy, unnamed.
    for host in ["169.254.169.254", "2852039166", "0xa9fea9fe", "[::ffff:169.254.169.254]", "metadata.google.internal"]
    {
        let body = json!({"name": "meta", "engine": "postgres",
            "connection": {"host": host, "port": 80, "database": "d", "user": "u", "password": password}});
        let (status, code, message) = error_of(&w.call("POST", "/api/v1/data-sources", &builder, Some(body)).await?);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{host}: {message}");
        assert!(message.starts_with("connection.host is a link-local"), "{host}: {message}");
        assert!(!message.contains("169.254") && !message.contains(host), "{host}: {message}");
    }
    let (_, list) = w.call("GET", "/api/v1/data-sources", &builder, None).await?;
    assert_eq!(list["data_sources"], json!([]), "refused creates wrote nothing");

    // Roles: only a builder (or admin) registers.
    for token in [&viewer, &member] {
        let (status, code, message) = error_of(
            &w.call("POST", "/api/v1/data-sources", token, Some(pg_body("sales", &pg.schema, &password))).await?,
        );
        assert_eq!((status, code.as_str()), (403, "permission_denied"), "{message}");
        assert_eq!(message, "data_sources.write needs role admin or builder");
    }

    // Register: the answer names the MindsDB database, never the connection.
    let (status, created) =
        w.call("POST", "/api/v1/data-sources", &builder, Some(pg_body("sales", &pg.schema, &password))).await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created, json!({"name": "sales", "engine": "postgres", "sql_name": "ds_sales"}));
    let (status, body) =
        w.call("POST", "/api/v1/data-sources", &builder, Some(pg_body("sales", &pg.schema, &password))).await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_exists")), "{body}");
    let (status, got) = w.call("GET", "/api/v1/data-sources/sales", &viewer, None).await?;
    assert_eq!((status, &got), (200, &created));

    // Connection, tables, columns, rows: all readable by a viewer.
    let (status, tested) = w.call("POST", "/api/v1/data-sources/sales/test", &viewer, None).await?;
    assert_eq!((status, tested), (200, json!({"ok": true, "reason": ""})));
    let (status, tables) = w.call("GET", "/api/v1/data-sources/sales/tables", &viewer, None).await?;
    assert_eq!(status, 200, "{tables}");
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["notes", "orders"], "only the schema's tables: {tables}");
    let (status, table) = w.call("GET", "/api/v1/data-sources/sales/tables/orders", &viewer, None).await?;
    assert_eq!(status, 200, "{table}");
    let columns: Vec<&str> = table["columns"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(columns, ["id", "item", "amount"], "{table}");
    let (status, rows) = w.call("GET", "/api/v1/data-sources/sales/tables/orders/rows?limit=1", &viewer, None).await?;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["columns"], json!(["id", "item", "amount"]));
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows["truncated"], false);
    let (_, notes) = w.call("GET", "/api/v1/data-sources/sales/tables/notes/rows", &viewer, None).await?;
    assert_eq!(
        (notes["truncated"].as_bool(), notes["rows"][0][1].as_str().map(str::len)),
        (Some(true), Some(2000)),
        "{notes}"
    );
    for (path, status_want, want) in [
        ("/api/v1/data-sources/sales/tables/orders/rows?limit=0", 400, "limit must be between 1 and 100"),
        ("/api/v1/data-sources/sales/tables/orders/rows?limit=101", 400, "limit must be between 1 and 100"),
        ("/api/v1/data-sources/sales/tables/Orders/rows", 400, "table name 'Orders' is invalid"),
        ("/api/v1/data-sources/sales/tables/nope", 404, "table 'nope' not found in data source 'sales'"),
        ("/api/v1/data-sources/nope/tables", 404, "data source 'nope' not found"),
        // The platform's own integrations of the company are not data sources.
        ("/api/v1/data-sources/desktop", 404, "data source 'desktop' not found"),
    ] {
        let (status, _, message) = error_of(&w.call("GET", path, &viewer, None).await?);
        assert_eq!(status, status_want, "{path}: {message}");
        assert!(message.contains(want), "{path}: {message}");
    }

    // The password (and the connection) never comes back, in any answer.
    let readable = everything_readable(&w, &viewer, "sales").await?;
    assert!(
        !readable.contains(&password) && !readable.contains("\"host\"") && !readable.contains(&pg.schema),
        "{readable}"
    );

    // Another tenant sees none of it, even as admin; its writes do not reach it.
    let (_, list) = w.call("GET", "/api/v1/data-sources", &other, None).await?;
    assert_eq!(list["data_sources"], json!([]));
    for (method, path) in [
        ("GET", "/api/v1/data-sources/sales"),
        ("POST", "/api/v1/data-sources/sales/test"),
        ("GET", "/api/v1/data-sources/sales/tables"),
        ("GET", "/api/v1/data-sources/sales/tables/orders"),
        ("GET", "/api/v1/data-sources/sales/tables/orders/rows"),
        ("DELETE", "/api/v1/data-sources/sales"),
    ] {
        let (status, code, _) = error_of(&w.call(method, path, &other, None).await?);
        assert_eq!((status, code.as_str()), (404, "not_found"), "{method} {path}");
    }

    // Delete: a member may not; the builder may; the database itself is untouched.
    let (status, _) = w.call("DELETE", "/api/v1/data-sources/sales", &member, None).await?;
    assert_eq!(status, 403);
    let (status, deleted) = w.call("DELETE", "/api/v1/data-sources/sales", &builder, None).await?;
    assert_eq!((status, deleted), (200, json!({"deleted": true, "id": "sales"})));
    let (status, _) = w.call("GET", "/api/v1/data-sources/sales", &builder, None).await?;
    assert_eq!(status, 404);
    let (count,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{}\".orders", pg.schema)))
            .fetch_one(&pg.pool)
            .await?;
    assert_eq!(count, 2);
    pg.drop().await?;
    w.platform.stop().await
}

/// Runs the `mysql` client as MariaDB's root (empty password on the test machine).
fn mariadb(sql: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "test", "-e", sql])
        .output()
        .map_err(|e| anyhow::anyhow!("the mysql client is needed to set up MariaDB: {e}"))?;
    anyhow::ensure!(out.status.success(), "mysql: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[tokio::test]
async fn mariadb_and_mysql_data_sources() -> anyhow::Result<()> {
    let w = World::start(&[]).await?;
    let tag = &uuid_hex()[..10];
    let (user, password, table) = (format!("gl_ds_{tag}"), format!("pw-{tag}-secret"), format!("ds_orders_{tag}"));
    mariadb(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT SELECT ON test.* TO '{user}'@'%'; \
         CREATE TABLE {table} (id INT PRIMARY KEY, item VARCHAR(50)); INSERT INTO {table} VALUES (1, 'apple'), (2, 'pear');"
    ))?;
    let outcome = mariadb_checks(&w, &user, &password, &table).await;
    let cleanup = mariadb(&format!("DROP USER IF EXISTS '{user}'@'%'; DROP TABLE IF EXISTS {table};"));
    w.platform.stop().await?;
    outcome?;
    cleanup
}

async fn mariadb_checks(w: &World, user: &str, password: &str, table: &str) -> anyhow::Result<()> {
    let tenant = unique_tenant("dsmy");
    let builder = w.platform.token(&tenant, "bianca", &["builder"]);
    let body = |name: &str, engine: &str, password: &str| {
        json!({"name": name, "engine": engine,
            "connection": {"host": "127.0.0.1", "port": 3306, "database": "test", "user": user, "password": password}})
    };
    let answer = w.call("POST", "/api/v1/data-sources", &builder, Some(body("shop", "mariadb", password))).await?;
    if answer.0 == 501 {
        assert!(
            std::env::var_os("GETLOOD_TEST_REQUIRE_MYSQL").is_none(),
            "MindsDB lacks the mysql handler: {}",
            answer.1
        );
        eprintln!("SKIPPED: MindsDB lacks the mysql handler (install mindsdb[mysql] next to it): {}", answer.1);
        return Ok(());
    }
    assert_eq!(answer, (201, json!({"name": "shop", "engine": "mariadb", "sql_name": "ds_shop"})));
    let (status, created) =
        w.call("POST", "/api/v1/data-sources", &builder, Some(body("shop_my", "mysql", password))).await?;
    assert_eq!((status, created["engine"].as_str()), (201, Some("mysql")), "{created}");
    // A wrong password: refused in general terms, the user name never repeated.
    let answer = w.call("POST", "/api/v1/data-sources", &builder, Some(body("shop_bad", "mariadb", "wrong"))).await?;
    let (status, code, message) = error_of(&answer);
    assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{message}");
    assert_eq!(
        message,
        "data source 'shop_bad': cannot connect to the database: the server refused the user name or password; nothing was registered"
    );

    for name in ["shop", "shop_my"] {
        let (status, rows) =
            w.call("GET", &format!("/api/v1/data-sources/{name}/tables/{table}/rows"), &builder, None).await?;
        assert_eq!(status, 200, "{rows}");
        assert_eq!(rows["rows"], json!([[1, "apple"], [2, "pear"]]), "{rows}");
        let (status, t) = w.call("GET", &format!("/api/v1/data-sources/{name}/tables/{table}"), &builder, None).await?;
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["columns"][1], json!({"name": "item", "data_type": "varchar"}), "{t}");
        let readable = everything_readable(w, &builder, name).await?;
        assert!(!readable.contains(password) && !readable.contains(user), "{readable}");
        let (status, _) = w.call("DELETE", &format!("/api/v1/data-sources/{name}"), &builder, None).await?;
        assert_eq!(status, 200);
    }
    Ok(())
}

/// A registered data source is usable by name: an agent lists `ds_<name>.<table>` in its data
/// (MindsDB checks the table exists), and a workflow `sql` node reads `ds_<name>.<table>`.
#[tokio::test]
async fn agents_and_sql_nodes_use_a_data_source_by_its_sql_name() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let w = World::start(&[Service::AgentRegistry, Service::Workflow, Service::EventDispatcher]).await?;
    let pg = PgData::create("use").await?;
    let tenant = unique_tenant("dsuse");
    let builder = w.platform.token(&tenant, "bianca", &["builder", "operator"]);
    let (status, created) =
        w.call("POST", "/api/v1/data-sources", &builder, Some(pg_body("crm", &pg.schema, ""))).await?;
    assert_eq!(status, 201, "{created}");
    let sql_name = created["sql_name"].as_str().unwrap().to_owned();
    assert_eq!(sql_name, "ds_crm");

    let agent = |tables: Value| {
        json!({"name": "analyst", "prompt_template": "You analyse orders.", "data": {"tables": tables},
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-agent"}})
    };
    let (status, body) =
        w.call("POST", "/api/v1/agents", &builder, Some(agent(json!([format!("{sql_name}.nope")])))).await?;
    // MindsDB checks the tables exist (its answer quotes the model settings: never shown).
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert!(!body.to_string().contains("sk-agent"), "{body}");
    let (status, body) =
        w.call("POST", "/api/v1/agents", &builder, Some(agent(json!([format!("{sql_name}.orders")])))).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["tables"], json!(["ds_crm.orders"]));
    let agent_id = body["id"].as_str().unwrap().to_owned();

    let graph = json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
            {"id": "q", "type": "sql", "data": {"query": format!("SELECT item FROM {sql_name}.orders WHERE amount > :min"), "params": {"min": "2"}}, "position": {"x": 100, "y": 0}},
            {"id": "end", "type": "end", "data": {}, "position": {"x": 200, "y": 0}},
        ],
        "edges": [{"id": "e1", "source": "start", "target": "q"}, {"id": "e2", "source": "q", "target": "end"}],
    });
    let (status, wf) =
        w.call("POST", "/api/v1/workflows", &builder, Some(json!({"name": "orders", "graph": graph}))).await?;
    assert_eq!(status, 201, "{wf}");
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    let (status, run) =
        w.call("POST", &format!("/api/v1/workflows/{wf_id}/execute"), &builder, Some(json!({"input": {}}))).await?;
    assert_eq!(status, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let (_, run) = w.call("GET", &format!("/api/v1/workflows/runs/{run_id}"), &builder, None).await?;
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or_default()) {
            break run;
        }
        assert!(Instant::now() < deadline, "the run never ended: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let q = run["node_runs"].as_array().unwrap().iter().find(|n| n["node_id"] == "q").unwrap();
    assert_eq!(q["output"]["row_count"], 1, "{q}");
    assert!(q["output"].to_string().contains("pear"), "{q}");

    let (status, body) = w.call("DELETE", &format!("/api/v1/agents/{agent_id}"), &builder, None).await?;
    assert_eq!(status, 200, "{body}");
    let (status, _) = w.call("DELETE", "/api/v1/data-sources/crm", &builder, None).await?;
    assert_eq!(status, 200);
    pg.drop().await?;
    w.platform.stop().await
}

/// `POST /graphql` as `token`: the `data`, or the first error's code and message.
async fn gql(w: &World, token: &str, query: &str, variables: Value) -> anyhow::Result<Result<Value, (String, String)>> {
    let body = json!({"query": query, "variables": variables});
    let (status, answer) = w.call("POST", "/graphql", token, Some(body)).await?;
    anyhow::ensure!(status == 200, "graphql answered {status}: {answer}");
    Ok(match answer["errors"].as_array().and_then(|e| e.first()) {
        Some(err) => Err((
            err["extensions"]["code"].as_str().unwrap_or("no code").to_owned(),
            err["message"].as_str().unwrap_or_default().to_owned(),
        )),
        None => Ok(answer["data"].clone()),
    })
}

#[tokio::test]
async fn data_sources_over_graphql_with_the_rest_rules() -> anyhow::Result<()> {
    let w = World::start(&[]).await?;
    let pg = PgData::create("pggql").await?;
    let tenant = unique_tenant("dsgql");
    let builder = w.platform.token(&tenant, "bianca", &["builder"]);
    let viewer = w.platform.token(&tenant, "victor", &["viewer"]);
    let other = w.platform.token(&unique_tenant("dsgqlx"), "mallory", &["admin"]);
    let password = format!("pw-{}", uuid_hex());
    let create = "mutation($i: DataSourceInput!) { createDataSource(input: $i) { name engine sqlName } }";
    let input = |host: &str| {
        json!({"i": {"name": "crm", "engine": "postgres", "connection":
            {"host": host, "port": 5432, "database": "test", "user": "postgres", "password": password, "schema": pg.schema}}})
    };

    let outcome = async {
        // The REST checks: the role, then the egress policy (the refusal never names the address).
        let denied = gql(&w, &viewer, create, input("127.0.0.1")).await?;
        assert_eq!(denied.map_err(|e| e.0), Err("permission_denied".to_owned()));
        let (code, message) = gql(&w, &builder, create, input("169.254.169.254")).await?.expect_err("metadata address");
        assert_eq!(code, "invalid_argument");
        assert!(message.starts_with("connection.host is a link-local") && !message.contains("169.254"), "{message}");

        let created = gql(&w, &builder, create, input("127.0.0.1")).await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(created["createDataSource"], json!({"name": "crm", "engine": "postgres", "sqlName": "ds_crm"}));
        let read = "{ dataSources { name sqlName } dataSource(name: \"crm\") { engine } dataSourceTables(name: \"crm\") { name kind } }";
        let data = gql(&w, &viewer, read, json!({})).await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(data["dataSources"], json!([{"name": "crm", "sqlName": "ds_crm"}]));
        assert_eq!(data["dataSource"]["engine"], "postgres");
        let tables: Vec<&str> =
            data["dataSourceTables"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
        assert!(tables.contains(&"orders") && tables.contains(&"notes"), "{data}");
        assert!(!data.to_string().contains(&password), "the password came back");
        let tested = gql(&w, &builder, "mutation { testDataSource(name: \"crm\") { ok reason } }", json!({})).await?;
        assert_eq!(tested.map_err(|e| anyhow::anyhow!("{e:?}"))?["testDataSource"], json!({"ok": true, "reason": ""}));

        // Another tenant: not found everywhere, and an empty list.
        let theirs = gql(&w, &other, "{ dataSources { name } }", json!({})).await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(theirs["dataSources"], json!([]));
        for query in ["{ dataSource(name: \"crm\") { name } }", "{ dataSourceTables(name: \"crm\") { name } }"] {
            assert_eq!(gql(&w, &other, query, json!({})).await?.map_err(|e| e.0), Err("not_found".to_owned()), "{query}");
        }
        let delete = "mutation { deleteDataSource(name: \"crm\") { id } }";
        assert_eq!(gql(&w, &other, delete, json!({})).await?.map_err(|e| e.0), Err("not_found".to_owned()));
        let deleted = gql(&w, &builder, delete, json!({})).await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(deleted["deleteDataSource"]["id"], "crm");
        anyhow::Ok(())
    }
    .await;
    pg.drop().await?;
    w.platform.stop().await?;
    outcome
}

/// The end-to-end case: a tenant registers the machine's MariaDB, an agent on the
/// OpenAI double is given one of its tables, and a chat with that agent answers from the rows
/// (the double plans the `SQL:` the question carries; MindsDB runs it on MariaDB).
#[tokio::test]
async fn an_agent_answers_over_a_mariadb_table() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let platform = Platform::builder()
        .service(Service::DesktopState)
        .service(Service::AgentRegistry)
        .service(Service::Pipeline)
        .service(Service::Gateway)
        .app_settings(Service::Pipeline, json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-intent"}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let w = World {
        base: platform.http_url(Service::Gateway),
        http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?,
        platform,
    };
    let tag = &uuid_hex()[..10];
    let (user, password, table) = (format!("gl_ag_{tag}"), format!("pw-{tag}-secret"), format!("ag_fruits_{tag}"));
    mariadb(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT SELECT ON test.* TO '{user}'@'%'; \
         CREATE TABLE {table} (id INT PRIMARY KEY, item VARCHAR(50)); INSERT INTO {table} VALUES (1, 'apple'), (2, 'pear');"
    ))?;
    let outcome = async {
        let builder = w.platform.token(&unique_tenant("dsagent"), "bianca", &["builder"]);
        let source = json!({"name": "shop", "engine": "mariadb",
            "connection": {"host": "127.0.0.1", "port": 3306, "database": "test", "user": user, "password": password}});
        let (status, created) = w.call("POST", "/api/v1/data-sources", &builder, Some(source)).await?;
        anyhow::ensure!(status == 201, "data source: {status} {created}");
        let agent = json!({"name": "fruit_analyst", "data": {"tables": [format!("ds_shop.{table}")]},
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-agent"}});
        let (status, body) = w.call("POST", "/api/v1/agents", &builder, Some(agent)).await?;
        anyhow::ensure!(status == 201, "agent: {status} {body}");
        let question = format!("Which fruits do we sell? SQL: SELECT item FROM ds_shop.{table} ORDER BY id");
        let chat = json!({"model": "fruit_analyst", "messages": [{"role": "user", "content": question}]});
        let (status, answer) = w.call("POST", "/v1/chat/completions", &builder, Some(chat)).await?;
        anyhow::ensure!(status == 200, "chat: {status} {answer}");
        let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        assert!(text.contains("apple") && text.contains("pear"), "the answer is not from the table: {answer}");
        anyhow::Ok(())
    }
    .await;
    let cleanup = mariadb(&format!("DROP USER IF EXISTS '{user}'@'%'; DROP TABLE IF EXISTS {table};"));
    w.platform.stop().await?;
    outcome?;
    cleanup
}
