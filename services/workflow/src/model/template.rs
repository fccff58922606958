//! `{{node.field}}` templates: parsing, references, and rendering against the outputs a node
//! can see.

use std::collections::HashMap;

use serde_json::Value;

/// One piece of a template string.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Ref(&'a str),
}

pub(super) fn parse_template(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "template has '{{' without a closing '}}'".to_owned())?;
        let reference = after[..close].trim();
        if reference.is_empty() || reference.split('.').any(str::is_empty) || reference.contains(char::is_whitespace) {
            return Err(format!("template reference '{{{{{}}}}}' is not of the form node_id.field", short(reference)));
        }
        out.push(Piece::Ref(reference));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The `node.field` references of a template (none when it does not parse).
pub(crate) fn references(s: &str) -> Vec<String> {
    parse_template(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r.to_owned()),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Outputs visible to a node: `input` plus every finished node's output, by node id.
pub(crate) type Scope = HashMap<String, Value>;

pub(super) fn lookup<'a>(scope: &'a Scope, reference: &str) -> Result<&'a Value, String> {
    let mut parts = reference.split('.');
    let head = parts.next().unwrap_or_default();
    let mut v = scope.get(head).ok_or_else(|| format!("{{{{{reference}}}}}: node '{head}' has no output"))?;
    for part in parts {
        v = match v {
            Value::Object(o) => o.get(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{{{{{reference}}}}}: no field '{part}'"))?;
    }
    Ok(v)
}

/// Renders a template string: a string that is exactly one reference yields the referenced
/// value itself (keeping numbers and objects typed); otherwise the pieces are concatenated.
pub(crate) fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    let pieces = parse_template(s)?;
    if let [Piece::Ref(r)] = pieces.as_slice() {
        return lookup(scope, r).cloned();
    }
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match lookup(scope, r)? {
                Value::String(s) => out.push_str(s),
                Value::Null => {}
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Renders a template as text.
pub(crate) fn render_text(s: &str, scope: &Scope) -> Result<String, String> {
    Ok(match render_str(s, scope)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Renders every string inside `v`.
pub(crate) fn render_value(v: &Value, scope: &Scope) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str(s, scope)?,
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, scope)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| Ok((k.clone(), render_value(x, scope)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A bounded, human-readable summary of an output.
pub(crate) fn summarize(v: &Value) -> String {
    let text = match v {
        Value::Object(o) if o.len() == 1 => match o.values().next() {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 200 { format!("{}…", text.chars().take(199).collect::<String>()) } else { text }
}

/// A name or reference quoted in a message, cut to 64 characters.
pub(super) fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
