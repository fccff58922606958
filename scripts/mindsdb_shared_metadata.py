"""Checks of scripts/mindsdb-shared-metadata.sh: two MindsDB 26.1.0 processes on one Postgres
metadata store (MINDSDB_DB_CON), already started and ready. Run with .venv-mindsdb's python
(it has psycopg2). Every check asserts; the first failure ends the run with exit 1.

Environment (set by the shell script):
  MDB_A, MDB_B        base URLs of the two processes (http://127.0.0.1:47400, ...:47401)
  MDB_DSN             the fresh Postgres database both use (also the data source of the checks)
  MDB_LOG_A, MDB_LOG_B their log files (which one ran each job execution)
  MDB_LLM_URL         OpenAI-compatible chat endpoint for the agent (scripts/llm.sh: :18080/v1)
  MDB_LLM_MODEL       its model name (smollm2-135m-instruct)
  MDB_CHECK_INTERVAL  jobs.check_interval both processes run with (seconds)

What is checked, all through MindsDB's HTTP API with GETLOOD's tenant headers (company-id, user-id):
  1. a project, a Postgres data source and a view created through A answer through B (and not
     for another company: the headers really scope);
  2. a job `EVERY minute` created through A runs once per scheduled time across both processes:
     its rows in Postgres (one INSERT per execution, carrying {{START_DATETIME}}) and
     log.jobs_history have one entry per scheduled time, at least two scheduled times;
  3. an agent created through A (local model) answers through B's streaming route.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import psycopg2

A = os.environ["MDB_A"]
B = os.environ["MDB_B"]
DSN = os.environ["MDB_DSN"]
LOGS = {"A": os.environ["MDB_LOG_A"], "B": os.environ["MDB_LOG_B"]}
LLM_URL = os.environ.get("MDB_LLM_URL", "http://127.0.0.1:18080/v1")
LLM_MODEL = os.environ.get("MDB_LLM_MODEL", "smollm2-135m-instruct")
CHECK_INTERVAL = int(os.environ.get("MDB_CHECK_INTERVAL", "2"))
# The scheduler sleeps check_interval + randint(1, 10) between polls (mindsdb/interfaces/jobs/scheduler.py).
POLL_GAP = CHECK_INTERVAL + 10

SUFFIX = uuid.uuid4().hex[:8]
COMPANY = f"shared-meta-{SUFFIX}"
HEADERS = {"company-id": COMPANY, "user-id": "getlood"}
PROJECT = "shared_meta"
DATASOURCE = "shared_pg"
SCHEMA = "gl_check"
JOB = "tick"
AGENT = "helper"

T0 = time.monotonic()
figures = []


def say(msg):
    print(f"shared-metadata: [{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def fail(msg):
    say(f"FAIL {msg}")
    sys.exit(1)


def passed(msg):
    say(f"PASS {msg}")


def request(base, path, body=None, headers=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers if headers is not None else HEADERS).items():
        req.add_header(k, v)
    return urllib.request.urlopen(req, timeout=timeout)


def sql(base, query, headers=None, timeout=120):
    """One statement through /api/sql/query; raises on a MindsDB error."""
    try:
        with request(base, "/api/sql/query", {"query": query, "context": {"db": "mindsdb"}}, headers, timeout) as r:
            out = json.loads(r.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"HTTP {err.code} for {query!r}: {err.read()[:500]!r}") from None
    if out.get("type") == "error":
        raise RuntimeError(f"{query!r}: {out.get('error_message')}")
    return out


def rows(base, query, headers=None):
    out = sql(base, query, headers)
    if out.get("type") != "table":
        raise RuntimeError(f"{query!r}: expected a table, got {out.get('type')}")
    return out["column_names"], out["data"]


def pg(query, args=()):
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None


def job_executions(name, job_id):
    """Per process: (executions, lost lock races) of the job, from its log.

    Each poll that finds the job due logs `Job execute: <name>(<id>)`, then tries to lock the
    scheduled time (a job-history row, unique per job and start time); the loser logs
    `Unable create history record for <id>, is locked?` and does not run it.
    """
    due = re.compile(rf"Job execute: {re.escape(name)}\({job_id}\)")
    lost = re.compile(rf"Unable create history record for {job_id}, is locked\?")
    counts = {}
    for who, path in LOGS.items():
        with open(path, errors="replace") as f:
            text = f.read()
        n_due, n_lost = len(due.findall(text)), len(lost.findall(text))
        counts[who] = (n_due - n_lost, n_lost)
    return counts


def main():
    # ---------------------------------------------------------------- preconditions
    try:
        with urllib.request.urlopen(LLM_URL.rstrip("/") + "/models", timeout=5) as r:
            json.loads(r.read())
    except Exception as err:  # noqa: BLE001 (any failure means the precondition is not met)
        fail(f"the local model at {LLM_URL} does not answer ({err}); start it with scripts/llm.sh start")

    # Data the checks read and write, in the same fresh database, apart from MindsDB's tables.
    pg(f"CREATE SCHEMA {SCHEMA}")
    pg(f"CREATE TABLE {SCHEMA}.items (id int PRIMARY KEY, name text)")
    pg(f"INSERT INTO {SCHEMA}.items VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma')")
    pg(f"CREATE TABLE {SCHEMA}.job_runs (start_at text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())")

    # ---------------------------------------------------------------- 1. project, data source, view
    sql(A, f"CREATE PROJECT {PROJECT}")
    u = urllib.parse.urlsplit(DSN)
    params = {"host": u.hostname, "port": u.port or 5432, "database": u.path.lstrip("/"),
              "user": urllib.parse.unquote(u.username or "postgres"),
              "password": urllib.parse.unquote(u.password or ""), "schema": SCHEMA}
    sql(A, f"CREATE DATABASE {DATASOURCE} WITH ENGINE = 'postgres', PARAMETERS = {json.dumps(params)}")

    # The job first: its first scheduled time passes while the other checks run.
    created = time.time()
    sql(A, f"CREATE JOB {PROJECT}.{JOB} (INSERT INTO {DATASOURCE}.job_runs (start_at) VALUES ('{{{{START_DATETIME}}}}')) EVERY minute")
    say(f"job {PROJECT}.{JOB} created through A (EVERY minute; jobs.check_interval={CHECK_INTERVAL}s on both)")

    sql(A, f"CREATE VIEW {PROJECT}.big_items AS (SELECT id, name FROM {DATASOURCE}.items WHERE id >= 2)")
    cols, data = rows(B, f"SELECT id, name FROM {PROJECT}.big_items ORDER BY id")
    if [list(map(str, r)) for r in data] != [["2", "beta"], ["3", "gamma"]]:
        fail(f"view created through A, read through B: got {cols} {data}")
    passed(f"project, data source and view created through A are queryable through B: {data}")

    _, projects = rows(B, "SELECT name FROM information_schema.databases WHERE type = 'project'")
    if [PROJECT] not in projects:
        fail(f"B does not list project {PROJECT}: {projects}")
    other = {"company-id": f"other-{SUFFIX}", "user-id": "getlood"}
    _, other_projects = rows(B, "SELECT name FROM information_schema.databases WHERE type = 'project'", other)
    if [PROJECT] in other_projects:
        fail(f"another company sees project {PROJECT} through B: the company-id header is not scoping")
    passed(f"B lists project {PROJECT} for company {COMPANY} and not for another company")

    with request(B, f"/api/projects/{PROJECT}/jobs") as r:
        jobs = json.loads(r.read())
    job = next((j for j in jobs if j.get("name") == JOB), None)
    if job is None:
        fail(f"B's /api/projects/{PROJECT}/jobs does not list {JOB}: {jobs}")
    job_id = job["id"]
    passed(f"job created through A is listed by B (id {job_id}, schedule {job.get('schedule_str')!r})")

    # ---------------------------------------------------------------- 3. agent (while the job waits)
    model = {"provider": "openai", "model_name": LLM_MODEL, "api_key": "sk-local", "base_url": LLM_URL}
    t = time.monotonic()
    sql(A, f"CREATE AGENT {PROJECT}.{AGENT} USING model = {json.dumps(model)}, "
           "prompt_template = 'You are a friendly assistant. Answer in one short sentence.'", timeout=180)
    figures.append(f"CREATE AGENT through A (live LLM call): {time.monotonic() - t:.1f}s")

    t = time.monotonic()
    events, first_data = [], None
    body = {"messages": [{"role": "user", "content": "Say hello to the team."}]}
    with request(B, f"/api/projects/{PROJECT}/agents/{AGENT}/completions/stream", body, timeout=180) as r:
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            fail(f"B's agent stream answered {ctype!r}")
        for raw in r:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            ev = json.loads(line[5:])
            events.append(ev)
            if ev.get("type") == "data" and first_data is None:
                first_data = time.monotonic() - t
    errors = [e for e in events if "error" in e]
    answers = [e.get("text") or e.get("content") for e in events if e.get("type") == "data"]
    if errors:
        fail(f"agent stream through B reported an error: {errors} (events: {events})")
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        fail(f"agent stream through B had no non-empty answer: {events}")
    if not events or events[-1].get("type") != "end":
        fail(f"agent stream through B did not end with an end event: {events[-3:]}")
    figures.append(f"agent answer through B: first data chunk after {first_data:.1f}s, stream {time.monotonic() - t:.1f}s, {len(events)} events")
    passed(f"agent created through A answers through B: {answers[0][:120]!r}")

    # ---------------------------------------------------------------- 2. the job, once per scheduled time
    # Two scheduled times are `created` and `created + 60 s`; each is picked up within one poll
    # gap by one of the two schedulers. After the second run, wait one more full poll gap so both
    # schedulers have polled past it (a duplicate would have run by then).
    deadline = created + 60 + 3 * POLL_GAP + 30
    runs = []
    while time.time() < deadline:
        runs = pg(f"SELECT start_at, count(*) FROM {SCHEMA}.job_runs GROUP BY start_at ORDER BY start_at")
        if len(runs) >= 2:
            break
        time.sleep(1)
    if len(runs) < 2:
        fail(f"job ran for {len(runs)} scheduled time(s) within {deadline - created:.0f}s of its creation: {runs}")
    say(f"job ran for two scheduled times; waiting one more poll gap ({POLL_GAP}s) for a duplicate")
    time.sleep(POLL_GAP)

    runs = pg(f"SELECT start_at, count(*), min(written_at), max(written_at) FROM {SCHEMA}.job_runs GROUP BY start_at ORDER BY start_at")
    doubled = [(r[0], r[1]) for r in runs if r[1] != 1]
    if doubled:
        fail(f"a scheduled time was executed more than once (start_at, executions): {doubled}")
    cols, hist = rows(B, f"SELECT name, project, run_start, run_end, error FROM log.jobs_history WHERE name = '{JOB}' AND project = '{PROJECT}'")
    hist = [dict(zip(cols, h)) for h in hist]
    finished = [h for h in hist if h["run_end"] is not None]
    starts = [str(h["run_start"])[:19] for h in finished]
    if len(starts) != len(set(starts)):
        fail(f"log.jobs_history has two rows for one scheduled time: {hist}")
    if [h for h in finished if h["error"]]:
        fail(f"log.jobs_history has failed runs: {hist}")
    if sorted(starts) != [r[0] for r in runs]:
        fail(f"log.jobs_history {sorted(starts)} does not match the executions in Postgres {[r[0] for r in runs]}")
    per_process = job_executions(JOB, job_id)
    execs = {who: n for who, (n, _) in per_process.items()}
    races = {who: lost for who, (_, lost) in per_process.items()}
    if sum(execs.values()) != len(runs):
        fail(f"the two processes logged {execs} executions of {JOB} for {len(runs)} scheduled times")
    t_first = time.mktime(time.strptime(runs[0][0], "%Y-%m-%d %H:%M:%S"))
    gaps = [
        time.mktime(time.strptime(b[0], "%Y-%m-%d %H:%M:%S")) - time.mktime(time.strptime(a[0], "%Y-%m-%d %H:%M:%S"))
        for a, b in zip(runs, runs[1:])
    ]
    lags = [(r[2].timestamp() - time.mktime(time.strptime(r[0], "%Y-%m-%d %H:%M:%S"))) for r in runs]
    figures.append(f"job: {len(runs)} scheduled times {[r[0][11:] for r in runs]}, each executed once; "
                   f"gap between scheduled times {gaps} s; first scheduled {t_first - created:+.1f}s after CREATE JOB; "
                   f"execution lag after the scheduled time {[round(x, 1) for x in lags]} s; executions by process {execs}, "
                   f"lost lock races (due but already locked by the other) {races}")
    passed(f"job EVERY minute: {len(runs)} scheduled times, one execution and one log.jobs_history row each")

    for f in figures:
        say(f"figure: {f}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, urllib.error.URLError, psycopg2.Error, OSError) as err:
        fail(str(err))
