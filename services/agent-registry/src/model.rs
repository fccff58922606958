//! Validation of client input and conversion between rows and protobuf messages.

use std::collections::HashMap;

use getlood_common::ApiError;
use getlood_common::egress::EgressPolicy;
use getlood_proto::agent_registry::v1::{Agent, AgentData, ModelConfig, Skill};

/// Agent and skill names: lowercase, digits, `-` and `_`, starting with a letter, at most 63.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "{kind} name '{}' is invalid: use 1-63 characters of [a-z0-9_-], starting with a letter",
            truncate(name)
        )))
    }
}

/// MindsDB data references: tables are `database.table`, knowledge bases one name of the
/// tenant's project; each part is `[a-z_][a-z0-9_]*` (the MindsDB identifier rule).
pub(crate) fn check_data_ref(kind: &str, reference: &str) -> Result<(), ApiError> {
    let parts_wanted = if kind == "table" { 2 } else { 1 };
    let part_ok = |p: &str| {
        let mut b = p.bytes();
        matches!(b.next(), Some(b'a'..=b'z' | b'_'))
            && p.len() <= 63
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    let parts: Vec<&str> = reference.split('.').collect();
    if parts.len() == parts_wanted && parts.iter().all(|p| part_ok(p)) {
        reserved_data(kind, &parts)
    } else if parts_wanted == 2 {
        Err(ApiError::invalid_argument(format!(
            "table '{}' is invalid: use database.table, each part [a-z_][a-z0-9_]*",
            truncate(reference)
        )))
    } else {
        Err(ApiError::invalid_argument(format!("{kind} '{}' is invalid: use [a-z_][a-z0-9_]*", truncate(reference))))
    }
}

/// MindsDB objects an agent must never read, whatever its owner asks: system schemas, the
/// tenants' projects (`t_<tenant>.agents` lists API keys in clear, `models`, knowledge bases),
/// knowledge bases' vector stores, and the conversation memory of every user of the tenant.
fn reserved_data(kind: &str, parts: &[&str]) -> Result<(), ApiError> {
    const SYSTEM: [&str; 3] = ["information_schema", "log", "mindsdb"];
    const MEMORY_KB: &str = "getlood_memory";
    let refused = match (kind, parts) {
        ("table", [db, _]) if SYSTEM.contains(db) => Some(format!("'{db}' is a MindsDB system schema")),
        ("table", [db, _]) if db.starts_with("t_") => {
            Some(format!("'{db}' is a tenant project (agents, models and knowledge bases), not data"))
        }
        // MindsDB keeps each knowledge base's vectors in a `store_<kb>` database:
        // `store_getlood_memory` holds every user's turns, unfiltered.
        ("table", [db, _]) if db.starts_with("store_") => {
            Some(format!("'{db}' is a knowledge base's vector store; give the agent the knowledge base instead"))
        }
        (_, [kb]) if *kb == MEMORY_KB => Some("it holds every user's conversations".to_owned()),
        _ => None,
    };
    match refused {
        Some(why) => {
            Err(ApiError::invalid_argument(format!("{kind} '{}' cannot be given to an agent: {why}", parts.join("."))))
        }
        None => Ok(()),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect::<String>().escape_debug().to_string()
}

/// Limits that keep one tenant's agent definitions bounded.
const MAX_PROMPT: usize = 32 * 1024;
const MAX_METADATA: usize = 64;
const MAX_LIST: usize = 64;

/// Checks the client-settable fields of an agent; `egress` decides which hosts
/// `model.base_url` may name.
pub(crate) fn check_agent(agent: &Agent, egress: &EgressPolicy) -> Result<(), ApiError> {
    check_name("agent", &agent.name)?;
    let model = agent.model.as_ref().ok_or_else(|| ApiError::invalid_argument("agent.model is required"))?;
    check_model(model, egress)?;
    if agent.description.len() > 2048 {
        return Err(ApiError::invalid_argument("agent.description is longer than 2048 bytes"));
    }
    if agent.prompt_template.len() > MAX_PROMPT {
        return Err(ApiError::invalid_argument(format!("agent.prompt_template is longer than {MAX_PROMPT} bytes")));
    }
    if agent.skills.len() > MAX_LIST {
        return Err(ApiError::invalid_argument(format!("agent.skills has more than {MAX_LIST} entries")));
    }
    for skill in &agent.skills {
        check_name("skill", skill)?;
    }
    if let Some(data) = &agent.data {
        check_data(data)?;
    }
    if agent.metadata.len() > MAX_METADATA {
        return Err(ApiError::invalid_argument(format!("agent.metadata has more than {MAX_METADATA} entries")));
    }
    for (k, v) in &agent.metadata {
        if k.is_empty() || k.len() > 128 || v.len() > 1024 {
            return Err(ApiError::invalid_argument("agent.metadata keys must be 1-128 bytes and values at most 1024"));
        }
    }
    Ok(())
}

fn check_model(model: &ModelConfig, egress: &EgressPolicy) -> Result<(), ApiError> {
    let provider_ok = !model.provider.is_empty()
        && model.provider.len() <= 32
        && model.provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !provider_ok {
        return Err(ApiError::invalid_argument(format!(
            "agent.model.provider '{}' is invalid: use [a-z0-9_], e.g. openai, anthropic, ollama",
            truncate(&model.provider)
        )));
    }
    if model.model_name.is_empty() || model.model_name.len() > 128 || model.model_name.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument("agent.model.model_name must be 1-128 printable characters"));
    }
    if let Some(url) = &model.base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 512 {
            return Err(ApiError::invalid_argument("agent.model.base_url must be an http(s) url"));
        }
        // MindsDB calls this URL from inside the cluster: no metadata service, loopback or
        // private network unless the operator allowed it (issue 13, "Egress").
        egress.check_url(url).map_err(|e| ApiError::invalid_argument(format!("agent.model.base_url: {e}")))?;
    }
    if model.api_key.len() > 512 {
        return Err(ApiError::invalid_argument("agent.model.api_key is longer than 512 bytes"));
    }
    Ok(())
}

/// An update that sends the model to another endpoint (`base_url` or `provider` changed) must
/// carry the API key again: the stored key was given for the old host and must never follow
/// the agent to a new one.
pub(crate) fn check_model_change(
    current: Option<&ModelConfig>,
    next: Option<&ModelConfig>,
    api_key_given: bool,
) -> Result<(), ApiError> {
    let (Some(current), Some(next)) = (current, next) else { return Ok(()) };
    if api_key_given {
        return Ok(());
    }
    let endpoint = |m: &ModelConfig| (m.provider.clone(), m.base_url.clone().filter(|u| !u.is_empty()));
    let (was, is) = (endpoint(current), endpoint(next));
    if was.1 != is.1 {
        return Err(ApiError::invalid_argument("changing model.base_url needs the api_key again"));
    }
    if was.0 != is.0 {
        return Err(ApiError::invalid_argument("changing model.provider needs the api_key again"));
    }
    Ok(())
}

fn check_data(data: &AgentData) -> Result<(), ApiError> {
    if data.tables.len() > MAX_LIST || data.knowledge_bases.len() > MAX_LIST {
        return Err(ApiError::invalid_argument(format!("agent.data lists are limited to {MAX_LIST} entries")));
    }
    for t in &data.tables {
        check_data_ref("table", t)?;
    }
    for kb in &data.knowledge_bases {
        check_data_ref("knowledge base", kb)?;
    }
    Ok(())
}

/// Checks the client-settable fields of a skill.
pub(crate) fn check_skill(skill: &Skill) -> Result<(), ApiError> {
    check_name("skill", &skill.name)?;
    if skill.description.len() > 2048 {
        return Err(ApiError::invalid_argument("skill.description is longer than 2048 bytes"));
    }
    if skill.prompt_fragment.len() > 8 * 1024 {
        return Err(ApiError::invalid_argument("skill.prompt_fragment is longer than 8192 bytes"));
    }
    check_data(&AgentData { tables: skill.tables.clone(), knowledge_bases: skill.knowledge_bases.clone() })
}

/// What an agent becomes once its skills are compiled in: MindsDB 26 has no skills, so their
/// tables and knowledge bases join the agent's data and their fragments join its prompt.
pub(crate) fn compile(agent: &mut Agent, skills: &[Skill]) {
    let mut data = agent.data.clone().unwrap_or_default();
    let mut prompt = agent.prompt_template.clone();
    for skill in skills {
        for t in &skill.tables {
            if !data.tables.contains(t) {
                data.tables.push(t.clone());
            }
        }
        for kb in &skill.knowledge_bases {
            if !data.knowledge_bases.contains(kb) {
                data.knowledge_bases.push(kb.clone());
            }
        }
        if !skill.prompt_fragment.is_empty() {
            if !prompt.is_empty() {
                prompt.push_str("\n\n");
            }
            prompt.push_str(&format!("[skill {}] {}", skill.name, skill.prompt_fragment));
        }
    }
    agent.effective_data = Some(data);
    agent.effective_prompt_template = prompt;
}

/// Removes what never leaves the registry: the API key (write-only; `has_api_key` says if set).
pub(crate) fn redact(mut agent: Agent) -> Agent {
    if let Some(model) = agent.model.as_mut() {
        model.has_api_key = model.has_api_key || !model.api_key.is_empty();
        model.api_key.clear();
    }
    agent
}

/// Metadata as stored (jsonb object of strings).
pub(crate) fn metadata_json(metadata: &HashMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "dashboard-builder", "agent_2"] {
            check_name("agent", ok).unwrap();
        }
        for bad in ["", "A", "1x", "a b", "a`b", "a;drop", "é", &"a".repeat(64)] {
            assert!(check_name("agent", bad).is_err(), "{bad}");
        }
        check_data_ref("table", "files.sales").unwrap();
        check_data_ref("knowledge base", "docs").unwrap();
        assert!(check_data_ref("table", "sales").is_err());
        assert!(check_data_ref("knowledge base", "a.b").is_err());
        // What an agent must never read: system schemas, tenant projects, everyone's memory.
        for (kind, reference) in [
            ("table", "t_acme.agents"),
            ("table", "t_other.models"),
            ("table", "information_schema.tables"),
            ("table", "log.jobs_history"),
            ("table", "mindsdb.models"),
            ("knowledge base", "getlood_memory"),
            ("table", "store_getlood_memory.getlood_memory"),
            ("table", "store_docs.docs"),
        ] {
            let err = check_data_ref(kind, reference).unwrap_err();
            assert!(err.message.contains("cannot be given to an agent"), "{reference}: {}", err.message);
        }
        assert!(check_data_ref("table", "a.b.c").is_err());
        assert!(check_data_ref("table", "x`y").is_err());
    }

    #[test]
    fn skills_compile_into_data_and_prompt() {
        let mut agent = Agent {
            prompt_template: "You help.".into(),
            data: Some(AgentData { tables: vec!["t1".into()], knowledge_bases: vec![] }),
            ..Default::default()
        };
        let skills = vec![
            Skill {
                name: "ui-generation".into(),
                prompt_fragment: "Propose windows.".into(),
                tables: vec!["t1".into(), "t2".into()],
                ..Default::default()
            },
            Skill { name: "data-analysis".into(), knowledge_bases: vec!["kb".into()], ..Default::default() },
        ];
        compile(&mut agent, &skills);
        let data = agent.effective_data.unwrap();
        assert_eq!(data.tables, ["t1", "t2"]);
        assert_eq!(data.knowledge_bases, ["kb"]);
        assert_eq!(agent.effective_prompt_template, "You help.\n\n[skill ui-generation] Propose windows.");
    }

    fn agent_with_url(url: &str) -> Agent {
        Agent {
            name: "a".into(),
            model: Some(ModelConfig {
                provider: "openai".into(),
                model_name: "gpt-4".into(),
                base_url: Some(url.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn base_url_follows_the_egress_policy() {
        let strict = EgressPolicy::default();
        let err = check_agent(&agent_with_url("http://169.254.169.254/v1"), &strict).unwrap_err();
        assert_eq!(
            err.message,
            "agent.model.base_url: 169.254.169.254 is a link-local address; allow it with app.egress.allow"
        );
        let err = check_agent(&agent_with_url("http://2852039166/"), &strict).unwrap_err();
        assert!(err.message.contains("169.254.169.254 is a link-local"), "{}", err.message);
        assert!(check_agent(&agent_with_url("http://[::ffff:169.254.169.254]/"), &strict).is_err());
        assert!(check_agent(&agent_with_url("http://127.0.0.1:18080/v1"), &strict).is_err());
        check_agent(&agent_with_url("https://api.openai.com/v1"), &strict).unwrap();
        let dev = EgressPolicy::new(&getlood_common::egress::EgressConfig {
            allow: vec!["127.0.0.0/8".into(), "localhost".into()],
        })
        .unwrap();
        check_agent(&agent_with_url("http://127.0.0.1:18080/v1"), &dev).unwrap();
        assert!(check_agent(&agent_with_url("http://169.254.169.254/"), &dev).is_err());
    }

    #[test]
    fn a_new_endpoint_needs_the_key_again() {
        let m = |provider: &str, url: Option<&str>| ModelConfig {
            provider: provider.into(),
            base_url: url.map(Into::into),
            ..Default::default()
        };
        let old = m("openai", Some("https://api.openai.com/v1"));
        let moved = m("openai", Some("https://evil.example/v1"));
        let err = check_model_change(Some(&old), Some(&moved), false).unwrap_err();
        assert_eq!(err.message, "changing model.base_url needs the api_key again");
        check_model_change(Some(&old), Some(&moved), true).unwrap();
        assert!(check_model_change(Some(&old), Some(&m("openai", None)), false).is_err());
        assert!(
            check_model_change(Some(&old), Some(&m("anthropic", Some("https://api.openai.com/v1"))), false).is_err()
        );
        // Same endpoint, another model name: the stored key stays where it was.
        check_model_change(Some(&old), Some(&old.clone()), false).unwrap();
        check_model_change(Some(&m("openai", Some(""))), Some(&m("openai", None)), false).unwrap();
    }

    #[test]
    fn api_key_never_leaves() {
        let agent = Agent {
            model: Some(ModelConfig { api_key: "sk-secret".into(), ..Default::default() }),
            ..Default::default()
        };
        let out = redact(agent);
        let model = out.model.unwrap();
        assert!(model.api_key.is_empty());
        assert!(model.has_api_key);
    }
}
