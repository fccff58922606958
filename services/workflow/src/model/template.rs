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

/// The most one rendering (a prompt, a node's params, a transform's mapping, an end node's
/// output) may produce, in bytes of JSON text: templates repeat references, so a small graph
/// over a large output would otherwise build outputs without bound (issue 13, "Bounds").
pub(crate) const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// What a rendering may still produce.
struct Budget(usize);

impl Budget {
    fn spend(&mut self, bytes: usize) -> Result<(), String> {
        match self.0.checked_sub(bytes) {
            Some(left) => {
                self.0 = left;
                Ok(())
            }
            None => Err(format!("rendered output is larger than {MAX_RENDERED_BYTES} bytes (the template limit)")),
        }
    }
}

/// Size of `v` as JSON text, counted without writing it and stopping once past `cap`.
fn json_len(v: &Value, cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                a.len() + 2
            }
            Value::Object(o) => {
                stack.extend(o.values());
                o.keys().map(|k| k.len() + 4).sum::<usize>() + 2
            }
        };
        if total > cap {
            break;
        }
    }
    total
}

/// Renders a template string: a string that is exactly one reference yields the referenced
/// value itself (keeping numbers and objects typed); otherwise the pieces are concatenated.
pub(crate) fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    render_str_within(s, scope, &mut Budget(MAX_RENDERED_BYTES))
}

fn render_str_within(s: &str, scope: &Scope, budget: &mut Budget) -> Result<Value, String> {
    let pieces = parse_template(s)?;
    if let [Piece::Ref(r)] = pieces.as_slice() {
        let v = lookup(scope, r)?;
        budget.spend(json_len(v, budget.0.saturating_add(1)))?;
        return Ok(v.clone());
    }
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => {
                budget.spend(t.len())?;
                out.push_str(t);
            }
            Piece::Ref(r) => match lookup(scope, r)? {
                Value::String(s) => {
                    budget.spend(s.len())?;
                    out.push_str(s);
                }
                Value::Null => {}
                other => {
                    budget.spend(json_len(other, budget.0.saturating_add(1)))?;
                    out.push_str(&other.to_string());
                }
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

/// Renders every string inside `v`, at most [`MAX_RENDERED_BYTES`] in all.
pub(crate) fn render_value(v: &Value, scope: &Scope) -> Result<Value, String> {
    render_value_within(v, scope, &mut Budget(MAX_RENDERED_BYTES))
}

fn render_value_within(v: &Value, scope: &Scope, budget: &mut Budget) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str_within(s, scope, budget)?,
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| render_value_within(x, scope, budget)).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    budget.spend(k.len())?;
                    Ok((k.clone(), render_value_within(x, scope, budget)?))
                })
                .collect::<Result<_, String>>()?,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rendering_is_bounded() {
        let mut scope = Scope::new();
        scope.insert("a".to_owned(), json!({"text": "x".repeat(100 * 1024), "list": vec!["y".repeat(1024); 200]}));
        // One large reference fits; repeating it does not, in a string or across a mapping.
        assert_eq!(render_text("{{a.text}}", &scope).unwrap().len(), 100 * 1024);
        let err = render_text("{{a.text}}{{a.text}}{{a.text}}", &scope).unwrap_err();
        assert!(err.contains("larger than 262144 bytes"), "{err}");
        let mapping = json!({"one": "{{a.text}}", "two": "{{a.text}}", "three": "{{a.text}}"});
        assert!(render_value(&mapping, &scope).unwrap_err().contains("262144"));
        // A reference to a whole object counts its size too.
        assert!(render_value(&json!({"l": "{{a.list}}", "m": "{{a.list}}"}), &scope).is_err());
        assert_eq!(render_value(&json!({"l": "{{a.list}}"}), &scope).unwrap()["l"].as_array().unwrap().len(), 200);
    }
}
