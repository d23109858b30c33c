//! Reading `infra/template.yaml`: YAML with CloudFormation's short-form tags, turned into the
//! JSON form (`{"Ref": …}`, `{"Fn::GetAtt": […]}`, `{"Fn::Sub": …}`) and resolved against the
//! stack's parameters and resources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use serde_yaml::value::TaggedValue;

use crate::error::LocalCloudError;

/// A SAM template and the folder its relative paths (`DefinitionUri`, `CodeUri`) start from.
#[derive(Debug, Clone)]
pub struct Template {
    pub base_dir: PathBuf,
    pub document: Value,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, LocalCloudError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LocalCloudError::Template(format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, base_dir)
    }

    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Self, LocalCloudError> {
        let yaml: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| LocalCloudError::Template(format!("not valid YAML: {e}")))?;
        let document = to_json(yaml, "")?;
        if !document["Resources"].is_object() {
            return Err(LocalCloudError::Template(
                "the template has no Resources".into(),
            ));
        }
        Ok(Template { base_dir, document })
    }

    pub fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.document["Resources"]
            .as_object()
            .into_iter()
            .flat_map(|resources| resources.iter())
    }

    pub fn resource_mut(&mut self, logical_id: &str) -> Option<&mut Value> {
        self.document["Resources"].get_mut(logical_id)
    }

    /// The parameters with their defaults, overridden by `overrides`.
    pub fn parameters(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, LocalCloudError> {
        let declared = self.document["Parameters"].as_object();
        for name in overrides.keys() {
            if declared.is_none_or(|d| !d.contains_key(name)) {
                return Err(LocalCloudError::Template(format!(
                    "parameter override {name} names no parameter of the template"
                )));
            }
        }
        let mut values = BTreeMap::new();
        for (name, declaration) in declared.into_iter().flatten() {
            let value = match overrides.get(name) {
                Some(value) => value.clone(),
                None => match &declaration["Default"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(LocalCloudError::Template(format!(
                            "parameter {name} has no default and no override"
                        )));
                    }
                },
            };
            values.insert(name.clone(), value);
        }
        Ok(values)
    }
}

/// YAML to JSON, with the short-form tags (`!Ref x`) in their long form (`{"Ref": "x"}`).
fn to_json(yaml: serde_yaml::Value, at: &str) -> Result<Value, LocalCloudError> {
    use serde_yaml::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)
            .map_err(|e| LocalCloudError::Template(format!("{at}: number {n}: {e}")))?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    other => {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: a key must be a string, got {other:?}"
                        )));
                    }
                };
                let value = to_json(value, &format!("{at}.{key}"))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => tagged_to_json(*tagged, at)?,
    })
}

fn tagged_to_json(tagged: TaggedValue, at: &str) -> Result<Value, LocalCloudError> {
    let tag = tagged.tag.to_string();
    let name = tag.trim_start_matches('!');
    let value = to_json(tagged.value, at)?;
    Ok(match name {
        "Ref" => json!({ "Ref": value }),
        "GetAtt" => match value {
            // `!GetAtt Queue.Arn` is `Fn::GetAtt: [Queue, Arn]`.
            Value::String(s) => match s.split_once('.') {
                Some((resource, attribute)) => json!({ "Fn::GetAtt": [resource, attribute] }),
                None => {
                    return Err(LocalCloudError::Template(format!(
                        "{at}: !GetAtt {s} needs Resource.Attribute"
                    )));
                }
            },
            other => json!({ "Fn::GetAtt": other }),
        },
        other => json!({ format!("Fn::{other}"): value }),
    })
}

/// What intrinsic functions resolve against.
pub trait ResolveContext {
    /// `Ref` of a parameter, a pseudo parameter or a resource.
    fn reference(&self, name: &str) -> Option<String>;
    /// `Fn::GetAtt` of a resource.
    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String>;
}

/// Resolves every intrinsic function in `value`; `at` says where, for error messages.
pub fn resolve(
    value: &Value,
    ctx: &dyn ResolveContext,
    at: &str,
) -> Result<Value, LocalCloudError> {
    match value {
        Value::Object(object) if object.len() == 1 => {
            let (key, argument) = object.iter().next().expect("the object has one entry");
            match key.as_str() {
                "Ref" => {
                    let name = argument.as_str().ok_or_else(|| {
                        LocalCloudError::Template(format!("{at}: Ref takes a name"))
                    })?;
                    ctx.reference(name).map(Value::String).ok_or_else(|| {
                        LocalCloudError::Template(format!(
                            "{at}: Ref {name} names no parameter or resource of the template"
                        ))
                    })
                }
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = argument
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let [resource, attribute] = parts[..] else {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: Fn::GetAtt takes [Resource, Attribute]"
                        )));
                    };
                    ctx.attribute(resource, attribute)
                        .map(Value::String)
                        .map_err(|problem| LocalCloudError::Template(format!("{at}: {problem}")))
                }
                "Fn::Sub" => resolve_sub(argument, ctx, at).map(Value::String),
                "Fn::Join" => {
                    let (Some(separator), Some(items)) = (
                        argument.get(0).and_then(Value::as_str),
                        argument.get(1).and_then(Value::as_array),
                    ) else {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: Fn::Join takes [separator, [values]]"
                        )));
                    };
                    let parts = items
                        .iter()
                        .map(|item| resolve(item, ctx, at).and_then(|v| scalar(&v, at)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Value::String(parts.join(separator)))
                }
                "Fn::Split" => {
                    let (Some(separator), Some(text)) =
                        (argument.get(0).and_then(Value::as_str), argument.get(1))
                    else {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: Fn::Split takes [separator, value]"
                        )));
                    };
                    let text = scalar(&resolve(text, ctx, at)?, at)?;
                    Ok(Value::Array(
                        text.split(separator)
                            .map(|part| Value::String(part.to_owned()))
                            .collect(),
                    ))
                }
                "Fn::Select" => {
                    let (Some(index), Some(list)) = (argument.get(0), argument.get(1)) else {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: Fn::Select takes [index, [values]]"
                        )));
                    };
                    let index = scalar(&resolve(index, ctx, at)?, at)?;
                    let list = resolve(list, ctx, at)?;
                    index
                        .parse::<usize>()
                        .ok()
                        .and_then(|index| list.as_array()?.get(index).cloned())
                        .ok_or_else(|| {
                            LocalCloudError::Template(format!(
                                "{at}: Fn::Select: no item {index} in {list}"
                            ))
                        })
                }
                intrinsic if intrinsic.starts_with("Fn::") || intrinsic == "Condition" => {
                    Err(LocalCloudError::Template(format!(
                        "{at}: the local cloud does not support {intrinsic}; use Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select or Fn::Split, or extend localcloud/src/template.rs"
                    )))
                }
                _ => resolve_object(object, ctx, at),
            }
        }
        Value::Object(object) => resolve_object(object, ctx, at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| resolve(item, ctx, &format!("{at}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn resolve_object(
    object: &Map<String, Value>,
    ctx: &dyn ResolveContext,
    at: &str,
) -> Result<Value, LocalCloudError> {
    object
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve(v, ctx, &format!("{at}.{k}"))?)))
        .collect::<Result<Map<_, _>, _>>()
        .map(Value::Object)
}

fn scalar(value: &Value, at: &str) -> Result<String, LocalCloudError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(LocalCloudError::Template(format!(
            "{at}: expected a string, got {other}"
        ))),
    }
}

/// `Fn::Sub` in both forms: `"text ${Name} ${Res.Attr}"` and `["text ${Var}", {Var: value}]`.
fn resolve_sub(
    argument: &Value,
    ctx: &dyn ResolveContext,
    at: &str,
) -> Result<String, LocalCloudError> {
    let (text, variables) = match argument {
        Value::String(text) => (text.as_str(), Map::new()),
        Value::Array(items) => match (items.first().and_then(Value::as_str), items.get(1)) {
            (Some(text), Some(Value::Object(vars))) => {
                let mut resolved = Map::new();
                for (name, value) in vars {
                    resolved.insert(name.clone(), resolve(value, ctx, &format!("{at}.{name}"))?);
                }
                (text, resolved)
            }
            _ => {
                return Err(LocalCloudError::Template(format!(
                    "{at}: Fn::Sub takes a string or [string, {{variables}}]"
                )));
            }
        },
        _ => {
            return Err(LocalCloudError::Template(format!(
                "{at}: Fn::Sub takes a string or [string, {{variables}}]"
            )));
        }
    };
    substitute(text, at, |name| {
        if let Some(value) = variables.get(name) {
            return scalar(value, at);
        }
        match name.split_once('.') {
            Some((resource, attribute)) => ctx
                .attribute(resource, attribute)
                .map_err(|problem| LocalCloudError::Template(format!("{at}: {problem}"))),
            None => ctx.reference(name).ok_or_else(|| {
                LocalCloudError::Template(format!(
                    "{at}: ${{{name}}} names no parameter or resource of the template"
                ))
            }),
        }
    })
}

/// Replaces each `${name}` in `text` with `lookup(name)`; `${!literal}` stays `${literal}`.
pub fn substitute(
    text: &str,
    at: &str,
    mut lookup: impl FnMut(&str) -> Result<String, LocalCloudError>,
) -> Result<String, LocalCloudError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| LocalCloudError::Template(format!("{at}: unclosed ${{ in {text:?}")))?;
        let name = after[..end].trim();
        match name.strip_prefix('!') {
            Some(literal) => {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            }
            None => out.push_str(&lookup(name)?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl ResolveContext for Fixed {
        fn reference(&self, name: &str) -> Option<String> {
            match name {
                "AWS::Region" => Some("eu-west-1".into()),
                "Queue" => Some("https://queue".into()),
                _ => None,
            }
        }

        fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String> {
            match (resource, attribute) {
                ("Queue", "Arn") => Ok("arn:aws:sqs:eu-west-1:1:q".into()),
                _ => Err(format!("{resource}.{attribute} is unknown")),
            }
        }
    }

    fn parsed(yaml: &str) -> Value {
        let template = Template::parse(
            &format!("Resources:\n  X:\n    Type: T\n    Properties:\n      P: {yaml}\n"),
            PathBuf::from("."),
        )
        .unwrap();
        resolve(
            &template.document["Resources"]["X"]["Properties"]["P"],
            &Fixed,
            "P",
        )
        .unwrap()
    }

    #[test]
    fn short_forms_resolve_like_long_forms() {
        assert_eq!(parsed("!Ref Queue"), json!("https://queue"));
        assert_eq!(
            parsed("!GetAtt Queue.Arn"),
            json!("arn:aws:sqs:eu-west-1:1:q")
        );
        assert_eq!(
            parsed("!Sub '${Queue.Arn}/${AWS::Region}/${!Literal}'"),
            json!("arn:aws:sqs:eu-west-1:1:q/eu-west-1/${Literal}")
        );
        assert_eq!(
            parsed("!Sub ['${A}-x', {A: !Ref Queue}]"),
            json!("https://queue-x")
        );
        assert_eq!(
            parsed("!Join [':', [a, !Ref Queue]]"),
            json!("a:https://queue")
        );
        assert_eq!(
            parsed("!Select [1, !Split ['/', 'arn:aws:sso:::instance/ssoins-1']]"),
            json!("ssoins-1")
        );
        assert_eq!(
            parsed("!Sub ['p/${I}/*', {I: !Select [2, !Split [':', !GetAtt Queue.Arn]]}]"),
            json!("p/sqs/*")
        );
    }

    #[test]
    fn unknown_names_and_unsupported_intrinsics_fail_with_their_place() {
        let template = Template::parse(
            "Resources:\n  X:\n    Type: T\n    Properties:\n      A: !Ref Nope\n      B: !If [c, a, b]\n",
            PathBuf::from("."),
        )
        .unwrap();
        let props = &template.document["Resources"]["X"]["Properties"];
        let error = resolve(&props["A"], &Fixed, "X.A").unwrap_err().to_string();
        assert!(
            error.contains("X.A: Ref Nope names no parameter or resource"),
            "{error}"
        );
        let error = resolve(&props["B"], &Fixed, "X.B").unwrap_err().to_string();
        assert!(error.contains("does not support Fn::If"), "{error}");
        let error = resolve(
            &json!({"Fn::Select": [3, {"Fn::Split": ["/", "a/b"]}]}),
            &Fixed,
            "X.C",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("X.C: Fn::Select: no item 3"), "{error}");
    }

    #[test]
    fn parameter_overrides_must_name_a_parameter() {
        let template = Template::parse(
            "Parameters:\n  Polls:\n    Type: Number\n    Default: 40\nResources: {}\n",
            PathBuf::from("."),
        )
        .unwrap();
        let defaults = template.parameters(&BTreeMap::new()).unwrap();
        assert_eq!(defaults["Polls"], "40");
        let wrong = BTreeMap::from([("Pols".to_owned(), "2".to_owned())]);
        assert!(template.parameters(&wrong).is_err());
    }
}
