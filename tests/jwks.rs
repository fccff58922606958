//! All six services configured with nothing but an identity provider's JWKS URL: RS256 and
//! ES256 tokens work through every hop (gateway -> pipeline -> agent-registry, gateway ->
//! desktop-state), and after the provider rotates its RSA key, a token signed by the new key
//! works through the same hops while one signed by the retired key is refused.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use getlood_auth::AuthConfig;
use getlood_testkit::{Platform, Service};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rsa::pkcs8::LineEnding;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

/// One signing key of the test identity provider.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    pem: String,
    jwk: Value,
}

impl SigningKey {
    fn rsa(kid: &str) -> anyhow::Result<Self> {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be()),
        });
        let pem = private.to_pkcs8_pem(LineEnding::LF)?.to_string();
        Ok(Self { kid: kid.to_owned(), algorithm: Algorithm::RS256, pem, jwk })
    }

    fn ec(kid: &str) -> anyhow::Result<Self> {
        let private = p256::SecretKey::random(&mut rand::thread_rng());
        let mut jwk: Value = serde_json::from_str(&private.public_key().to_jwk_string())?;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        let pem = private.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)?.to_string();
        Ok(Self { kid: kid.to_owned(), algorithm: Algorithm::ES256, pem, jwk })
    }

    fn token(&self, tenant: &str) -> anyhow::Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let key = match self.algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.pem.as_bytes())?,
            _ => EncodingKey::from_ec_pem(self.pem.as_bytes())?,
        };
        let claims = json!({
            "sub": "alice", "tenant": tenant, "roles": ["member"],
            "exp": jsonwebtoken::get_current_timestamp() + 600, "aud": "getlood", "iss": "getlood",
        });
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}

/// Serves `document` as the provider's JWKS on a loopback port; the test replaces it to rotate.
async fn jwks_server(document: Arc<RwLock<Value>>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document.read().map(|d| d.clone()).unwrap_or_default()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `GET /api/v1/me`: the gateway's own verifier.
    async fn me(&self, token: &str) -> anyhow::Result<reqwest::StatusCode> {
        Ok(self.http.get(format!("{}/api/v1/me", self.base)).bearer_auth(token).send().await?.status())
    }

    /// Gateway -> desktop-state: creates a desktop, the status and body.
    async fn create_desktop(&self, token: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = self
            .http
            .post(format!("{}/api/v1/desktops", self.base))
            .bearer_auth(token)
            .json(&json!({"name": "jwks"}))
            .send()
            .await?;
        Ok((resp.status(), resp.json().await.unwrap_or(Value::Null)))
    }

    /// Gateway -> pipeline -> agent-registry: a chat turn (no agent in the tenant, so the
    /// pipeline asks the registry by skill, then for a default agent, and answers that none
    /// can help), the status and body.
    async fn chat(&self, token: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(token)
            .json(&json!({"model": "getlood", "messages": [{"role": "user", "content": "Crée-moi un dashboard analytics"}]}))
            .send()
            .await?;
        Ok((resp.status(), resp.json().await.unwrap_or(Value::Null)))
    }

    /// Every hop accepts `token`.
    async fn all_hops_accept(&self, token: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.me(token).await? == 200, "gateway refused the token");
        let (status, body) = self.create_desktop(token).await?;
        anyhow::ensure!(status == 201, "gateway -> desktop-state: {status} {body}");
        let (status, body) = self.chat(token).await?;
        anyhow::ensure!(status == 200, "gateway -> pipeline -> agent-registry: {status} {body}");
        let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        // No agent in the tenant: the pipeline asked the registry by skill and for a default
        // agent, then says so (a refusal by the registry would end the turn with an error).
        anyhow::ensure!(answer.contains("Aucun de vos agents"), "unexpected answer in {body}");
        Ok(())
    }
}

/// Retries `all_hops_accept` until it passes: each service fetches the rotated JWKS when it
/// first meets the new key id, so the first calls after a rotation may be refused.
async fn eventually_all_hops_accept(client: &Client, token: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        match client.all_hops_accept(token).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(_) if started.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

#[tokio::test]
async fn jwks_only_rs256_es256_and_a_key_rotation_work_through_every_hop() -> anyhow::Result<()> {
    let (rsa_1, ec_1, rsa_2) = (SigningKey::rsa("rsa-1")?, SigningKey::ec("ec-1")?, SigningKey::rsa("rsa-2")?);
    let document = Arc::new(RwLock::new(json!({"keys": [rsa_1.jwk, ec_1.jwk]})));
    let jwks_url = jwks_server(document.clone()).await?;
    // No HS256 secret, no static key: the JWKS URL is the only source of keys, and the periodic
    // refresh is far beyond the test, so the rotation below is picked up on the unknown kid.
    let auth = AuthConfig {
        hs256_secret: None,
        jwks_url: Some(jwks_url),
        jwks_refresh: Duration::from_secs(3600),
        ..AuthConfig::default()
    };
    let platform = Platform::builder().all().auth(auth).start().await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let client = Client { http: reqwest::Client::new(), base: platform.http_url(Service::Gateway) };
    let tenant = format!("jwks_{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros());

    // Both algorithms, through every hop.
    client.all_hops_accept(&rsa_1.token(&tenant)?).await?;
    client.all_hops_accept(&ec_1.token(&tenant)?).await?;
    // A key the provider never published is refused at the edge.
    let stranger = SigningKey::rsa("rsa-1")?;
    assert_eq!(client.me(&stranger.token(&tenant)?).await?, 401, "a forged key with a known kid was accepted");

    // Rotation: the provider retires rsa-1 and publishes rsa-2.
    *document.write().map_err(|_| anyhow::anyhow!("poisoned"))? = json!({"keys": [rsa_2.jwk, ec_1.jwk]});
    let took = eventually_all_hops_accept(&client, &rsa_2.token(&tenant)?).await?;
    eprintln!("rotated key accepted by every hop after {took:?}");
    // The retired key's tokens are refused once the gateway has the new document.
    assert_eq!(client.me(&rsa_1.token(&tenant)?).await?, 401, "a token of the retired key was accepted");
    // The EC key survived the rotation.
    client.all_hops_accept(&ec_1.token(&tenant)?).await?;
    Ok(())
}
