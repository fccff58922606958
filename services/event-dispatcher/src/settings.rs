//! The dispatcher's own settings (`app.*`, env `GETLOOD_EVENT_DISPATCHER_APP__*`).

use std::time::Duration;

use getlood_config::{ConfigError, Validate};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// event-dispatcher settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherSettings {
    /// Heartbeat period of an idle subscription whose request does not set one.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Items buffered per subscriber.
    pub subscriber_buffer: usize,
    /// How long a subscriber may leave its buffer full before it is told to resync.
    #[serde(with = "humantime_serde")]
    pub lag_timeout: Duration,
    /// Knowledge-base memory.
    pub memory: MemorySettings,
    /// Bounds of the tenants' own knowledge bases (embedded with `memory.embedding`).
    pub knowledge_bases: KnowledgeBaseSettings,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(15),
            subscriber_buffer: 256,
            lag_timeout: Duration::from_secs(10),
            memory: MemorySettings::default(),
            knowledge_bases: KnowledgeBaseSettings::default(),
        }
    }
}

/// Bounds of the tenants' own knowledge bases (`app.knowledge_bases.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeBaseSettings {
    /// Knowledge bases one tenant may hold (the platform's memory one not counted).
    pub max_per_tenant: usize,
    /// Documents one insert may carry.
    pub max_documents_per_insert: usize,
    /// Longest document content, in characters (longer documents are split into chunks by
    /// MindsDB when stored).
    pub max_document_chars: usize,
    /// Bytes of content and metadata one insert may carry in all.
    pub max_insert_bytes: usize,
}

impl Default for KnowledgeBaseSettings {
    fn default() -> Self {
        Self {
            max_per_tenant: 20,
            max_documents_per_insert: 100,
            max_document_chars: 32_000,
            max_insert_bytes: 512 * 1024,
        }
    }
}

/// Knowledge-base memory settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Whether `turn.completed` events are ingested (Search works either way).
    pub enabled: bool,
    /// Name of the knowledge base in each tenant's project.
    pub knowledge_base: String,
    /// The embedding model every memory knowledge base is created with.
    pub embedding: EmbeddingConfig,
    /// Durable consumer shared by the replicas.
    pub consumer_name: String,
    /// Subject filter of the consumer; unset means every tenant's `turn.completed`.
    pub filter_subject: Option<String>,
    /// Turns ingested concurrently by one replica.
    pub concurrency: usize,
    /// Attempts per turn before it is given up.
    pub max_deliver: i64,
    /// Delay before each redelivery after a failure (the last one repeats), e.g. `["1s", "5s"]`.
    pub backoff: Vec<humantime_serde::Serde<Duration>>,
    /// Time to ingest one turn before JetStream redelivers it.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            knowledge_base: "getlood_memory".to_owned(),
            embedding: EmbeddingConfig::default(),
            consumer_name: "event-dispatcher-memory".to_owned(),
            filter_subject: None,
            concurrency: 4,
            max_deliver: 8,
            backoff: [1, 5, 15, 30, 60, 120, 300].into_iter().map(|s| Duration::from_secs(s).into()).collect(),
            ack_wait: Duration::from_secs(60),
        }
    }
}

/// An embedding model reachable by MindsDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// MindsDB embedding provider (`openai` for any OpenAI-compatible endpoint).
    pub provider: String,
    /// Model name.
    pub model_name: String,
    /// OpenAI-compatible base URL; the default is the local embedding server.
    pub base_url: Option<String>,
    /// Provider key; stored in the knowledge base, never logged.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub api_key: Option<SecretString>,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            provider: "openai".to_owned(),
            model_name: "all-MiniLM-L6-v2".to_owned(),
            base_url: Some("http://127.0.0.1:18081/v1".to_owned()),
            // The local server ignores keys, but MindsDB's openai provider insists on one.
            api_key: Some(SecretString::from("none")),
        }
    }
}

fn serialize_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    // Never written back out in clear (config dumps).
    match v {
        Some(_) => s.serialize_some("******"),
        None => s.serialize_none(),
    }
}

impl Validate for DispatcherSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        getlood_config::require_positive([
            ("app.heartbeat_interval", self.heartbeat_interval),
            ("app.lag_timeout", self.lag_timeout),
            ("app.memory.ack_wait", self.memory.ack_wait),
        ])?;
        if self.subscriber_buffer == 0 {
            return Err(ConfigError::invalid("app.subscriber_buffer", "must be at least 1"));
        }
        let m = &self.memory;
        if getlood_mindsdb::Ident::new(&m.knowledge_base).is_err() {
            return Err(ConfigError::invalid("app.memory.knowledge_base", "must match [a-z_][a-z0-9_]{0,62}"));
        }
        if m.concurrency == 0 || m.max_deliver < 1 {
            return Err(ConfigError::invalid("app.memory", "concurrency and max_deliver must be at least 1"));
        }
        if m.consumer_name.is_empty()
            || !m.consumer_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::invalid("app.memory.consumer_name", "must match [A-Za-z0-9_-]+"));
        }
        let k = &self.knowledge_bases;
        if k.max_per_tenant == 0
            || k.max_documents_per_insert == 0
            || k.max_document_chars == 0
            || k.max_insert_bytes == 0
        {
            return Err(ConfigError::invalid("app.knowledge_bases", "every bound must be at least 1"));
        }
        if m.embedding.provider.is_empty() || m.embedding.model_name.is_empty() {
            return Err(ConfigError::invalid("app.memory.embedding", "provider and model_name are required"));
        }
        Ok(())
    }
}
