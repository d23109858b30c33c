//! One crawl of a scope (connection × region × resource type) against its manifest.
//!
//! The manifest holds, per entity id, the content hash of its last known state and how many
//! complete crawls in a row missed it. An unchanged entity costs nothing; a new or changed
//! one is written with a field-level diff; one missing from `gone_after` complete crawls in a
//! row is gone. A crawl that was not complete (a page failed, throttling outlasted the
//! retries, access was denied, time ran out) changes nothing at all: absence proves nothing
//! when the listing is partial.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::entity::Family;

/// An entity as a crawl saw it: its stable id and its normalised content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub content: Value,
}

/// What the manifest remembers of one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Known {
    pub hash: String,
    /// Complete crawls in a row that did not see it.
    #[serde(default)]
    pub misses: u32,
    /// The run that counted its last miss: a conclusion retried with the same run (the state
    /// machine retries a step whose writes landed) must not count that miss again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_by: Option<String>,
}

pub type Manifest = BTreeMap<String, Known>;

/// How the crawl ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crawl {
    /// Every page of every call was read.
    Complete(Vec<Observed>),
    /// Something failed; the reason is reported and nothing is concluded.
    Failed { reason: String },
}

/// One field that differs, by its JSON path (`tags.Name`, `securityGroups[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldChange {
    Added {
        path: String,
        new: Value,
    },
    Removed {
        path: String,
        old: Value,
    },
    Changed {
        path: String,
        old: Value,
        new: Value,
    },
}

impl FieldChange {
    pub fn path(&self) -> &str {
        match self {
            FieldChange::Added { path, .. }
            | FieldChange::Removed { path, .. }
            | FieldChange::Changed { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Each change carries the entity's new content hash.
    Created {
        entity: Observed,
        hash: String,
    },
    Changed {
        entity: Observed,
        hash: String,
        diff: Vec<FieldChange>,
        /// The content it replaces, as `previous` gave it.
        previous: Option<Value>,
    },
    /// Only volatile fields changed: the current state to keep, and nothing for history.
    Refreshed {
        entity: Observed,
        hash: String,
    },
    Gone {
        id: String,
    },
}

/// What one crawl asks to write: the changes, and the manifest to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<Change>,
    pub manifest: Manifest,
    /// Entities not seen this time but not gone yet.
    pub missing: usize,
    pub failure: Option<String>,
}

/// Feeds what is written to it to a SHA-256.
/// Feeds what is written to it to a SHA-256, which keeps its own block buffer.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The content hash of a JSON document: SHA-256 of its canonical JSON (object keys sorted, as
/// `serde_json`'s map keeps them).
pub fn content_hash(content: &Value) -> String {
    hash_of(content)
}

/// SHA-256 of what `serde_json` writes for `value`, straight into the digest, never into a
/// string: a crawl hashes every entity it sees. An entity is hashed as its type writes it
/// (`Entity::content_hash`), without building a JSON document first.
pub fn hash_of<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut hashing = Hashing(Sha256::new());
    // The digest takes any bytes; a value that does not serialise (none of ours) hashes as
    // what was written of it.
    let _ = serde_json::to_writer(&mut hashing, value);
    crate::hex::lower(&hashing.0.finalize())
}

/// The field-level differences from `old` to `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    diff_at("", old, new, &mut changes);
    changes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_at(path: &str, old: &Value, new: &Value, changes: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(before), Value::Object(after)) => {
            let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for key in keys {
                let at = join(path, key);
                match (before.get(key), after.get(key)) {
                    (Some(o), Some(n)) => diff_at(&at, o, n, changes),
                    (None, Some(n)) => changes.push(FieldChange::Added {
                        path: at,
                        new: n.clone(),
                    }),
                    (Some(o), None) => changes.push(FieldChange::Removed {
                        path: at,
                        old: o.clone(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(before), Value::Array(after)) => {
            for i in 0..before.len().max(after.len()) {
                let at = format!("{path}[{i}]");
                match (before.get(i), after.get(i)) {
                    (Some(o), Some(n)) => diff_at(&at, o, n, changes),
                    (None, Some(n)) => changes.push(FieldChange::Added {
                        path: at,
                        new: n.clone(),
                    }),
                    (Some(o), None) => changes.push(FieldChange::Removed {
                        path: at,
                        old: o.clone(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (o, n) if o != n => changes.push(FieldChange::Changed {
            path: path.to_owned(),
            old: o.clone(),
            new: n.clone(),
        }),
        _ => {}
    }
}

/// Whether a field changes on its own, with no one changing the resource: a subnet's free
/// addresses, a target's health, a database or a function moving through AWS's transient
/// states (and a function's state, which the listing does not answer and the event refresh
/// does). A crawl writes such a field as the entity's current state, never as a change in
/// its history.
pub fn is_volatile(family: Option<Family>, path: &str) -> bool {
    match path {
        "details.availableIps" => true,
        "status" => matches!(family, Some(Family::Database | Family::Serverless)),
        _ => path.starts_with("details.targets[") && path.ends_with("].health"),
    }
}

/// The changes from `old` to `new` that history records: all but the volatile fields'.
pub fn recorded_diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let family = new
        .get("family")
        .and_then(Value::as_str)
        .and_then(Family::parse);
    let mut changes = diff(old, new);
    changes.retain(|change| !is_volatile(family, change.path()));
    changes
}

/// What one page of a crawl changes: its new and changed entities, against the manifest
/// entries of the ids it holds, each seen entity with its content hash. Safe to write before
/// the crawl ends: what a page shows is true whether or not a later page fails. `previous`
/// gives the last known content of an entity
/// whose hash changed (the store reads it only for those), for its diff. An entity whose
/// volatile fields alone changed is [`Change::Refreshed`].
pub fn page_changes<E>(
    known: &Manifest,
    seen: Vec<(Observed, String)>,
    mut previous: impl FnMut(&str) -> Result<Option<Value>, E>,
) -> Result<Vec<Change>, E> {
    let mut changes = Vec::new();
    for (entity, hash) in seen {
        match known.get(&entity.id) {
            None => changes.push(Change::Created { entity, hash }),
            Some(known) if known.hash != hash => {
                let old = previous(&entity.id)?;
                let diff = old
                    .as_ref()
                    .map(|old| recorded_diff(old, &entity.content))
                    .unwrap_or_default();
                if diff.is_empty() {
                    changes.push(Change::Refreshed { entity, hash });
                } else {
                    changes.push(Change::Changed {
                        entity,
                        hash,
                        diff,
                        previous: old,
                    });
                }
            }
            Some(_) => {}
        }
    }
    Ok(changes)
}

/// What a complete crawl concludes about the manifest's entities by whether it saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conclusion {
    /// Missed `gone_after` complete crawls in a row.
    pub gone: Vec<String>,
    /// Missed, not gone yet: the id and its new miss count.
    pub missed: Vec<(String, u32)>,
    /// Seen again after a miss: their count goes back to zero.
    pub back: Vec<String>,
}

pub fn conclude(manifest: &Manifest, seen: &BTreeSet<String>, gone_after: u32) -> Conclusion {
    let mut conclusion = Conclusion::default();
    for (id, known) in manifest {
        if seen.contains(id) {
            if known.misses > 0 {
                conclusion.back.push(id.clone());
            }
            continue;
        }
        let misses = known.misses + 1;
        if misses >= gone_after.max(1) {
            conclusion.gone.push(id.clone());
        } else {
            conclusion.missed.push((id.clone(), misses));
        }
    }
    conclusion
}

/// A whole crawl at once: [`page_changes`] over everything seen, then [`conclude`].
pub fn reconcile_scope(
    manifest: &Manifest,
    crawl: Crawl,
    gone_after: u32,
    previous: impl Fn(&str) -> Option<Value>,
) -> Outcome {
    let seen = match crawl {
        Crawl::Failed { reason } => {
            return Outcome {
                changes: Vec::new(),
                manifest: manifest.clone(),
                missing: 0,
                failure: Some(reason),
            };
        }
        Crawl::Complete(seen) => seen,
    };
    let mut next: Manifest = seen
        .iter()
        .map(|e| {
            let known = Known {
                hash: content_hash(&e.content),
                misses: 0,
                missed_by: None,
            };
            (e.id.clone(), known)
        })
        .collect();
    let ids: BTreeSet<String> = next.keys().cloned().collect();
    let seen = seen
        .into_iter()
        .map(|entity| {
            let hash = content_hash(&entity.content);
            (entity, hash)
        })
        .collect();
    let Ok(mut changes) = page_changes(manifest, seen, |id| {
        Ok::<_, std::convert::Infallible>(previous(id))
    });
    let conclusion = conclude(manifest, &ids, gone_after);
    let missing = conclusion.missed.len();
    for (id, misses) in conclusion.missed {
        if let Some(known) = manifest.get(&id) {
            next.insert(
                id,
                Known {
                    hash: known.hash.clone(),
                    misses,
                    missed_by: None,
                },
            );
        }
    }
    changes.extend(conclusion.gone.into_iter().map(|id| Change::Gone { id }));
    Outcome {
        changes,
        manifest: next,
        missing,
        failure: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instance(id: &str, name: &str) -> Observed {
        Observed {
            id: id.into(),
            content: json!({"name": name, "tags": {"Name": name}, "securityGroups": ["sg-1"]}),
        }
    }

    fn crawled(manifest: &Manifest, seen: Vec<Observed>) -> Outcome {
        reconcile_scope(manifest, Crawl::Complete(seen), 2, |_| None)
    }

    #[test]
    fn the_content_hash_is_the_sha256_of_the_canonical_json() {
        // Stored hashes were made from the JSON text: a hash made another way would mark
        // every entity changed once.
        let content = json!({"name": "web", "tags": {"b": "2", "a": "1"}, "ports": [443, 80]});
        let text = content.to_string();
        assert_eq!(
            text,
            r#"{"name":"web","ports":[443,80],"tags":{"a":"1","b":"2"}}"#
        );
        assert_eq!(
            content_hash(&content),
            crate::hex::lower(&Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn a_second_crawl_with_nothing_changed_writes_nothing() {
        let first = crawled(&Manifest::new(), vec![instance("i-1", "web")]);
        assert_eq!(first.changes.len(), 1);
        let second = crawled(&first.manifest, vec![instance("i-1", "web")]);
        assert!(second.changes.is_empty());
        assert_eq!(second.manifest, first.manifest);
    }

    #[test]
    fn a_tag_change_is_one_change_with_its_field_diff() {
        let first = crawled(&Manifest::new(), vec![instance("i-1", "web")]);
        let old = instance("i-1", "web").content;
        let second = reconcile_scope(
            &first.manifest,
            Crawl::Complete(vec![instance("i-1", "api")]),
            2,
            |_| Some(old.clone()),
        );
        let [Change::Changed { diff, .. }] = second.changes.as_slice() else {
            panic!("one change: {:?}", second.changes);
        };
        assert_eq!(
            diff,
            &[
                FieldChange::Changed {
                    path: "name".into(),
                    old: json!("web"),
                    new: json!("api")
                },
                FieldChange::Changed {
                    path: "tags.Name".into(),
                    old: json!("web"),
                    new: json!("api")
                },
            ]
        );
    }

    #[test]
    fn gone_only_after_n_complete_crawls_in_a_row() {
        let first = crawled(&Manifest::new(), vec![instance("i-1", "web")]);
        let once = crawled(&first.manifest, vec![]);
        assert!(once.changes.is_empty(), "one miss is not gone");
        assert_eq!(once.missing, 1);
        let back = crawled(&once.manifest, vec![instance("i-1", "web")]);
        assert!(back.changes.is_empty(), "it came back: not a change");
        assert_eq!(back.manifest["i-1"].misses, 0);
        let again = crawled(&back.manifest, vec![]);
        let twice = crawled(&again.manifest, vec![]);
        assert_eq!(twice.changes, [Change::Gone { id: "i-1".into() }]);
        assert!(!twice.manifest.contains_key("i-1"));
    }

    #[test]
    fn a_failed_crawl_concludes_nothing() {
        let first = crawled(&Manifest::new(), vec![instance("i-1", "web")]);
        let missed = crawled(&first.manifest, vec![]);
        for _ in 0..5 {
            let failed = reconcile_scope(
                &missed.manifest,
                Crawl::Failed {
                    reason: "AccessDenied in eu-west-1".into(),
                },
                2,
                |_| None,
            );
            assert!(failed.changes.is_empty());
            assert_eq!(failed.manifest, missed.manifest, "misses do not grow");
            assert_eq!(failed.failure.as_deref(), Some("AccessDenied in eu-west-1"));
        }
    }

    #[test]
    fn a_volatile_field_alone_refreshes_the_entity_without_a_change() {
        // Issue 15, finding 6: a subnet's free addresses, a target's health and a database's
        // transient states wrote a history record on almost every crawl.
        let subnet = |free: i32, cidr: &str| Observed {
            id: "subnet-1".into(),
            content: json!({"family": "network", "status": "available",
                "details": {"kind": "subnet", "availableIps": free, "cidrBlock": cidr}}),
        };
        let first = crawled(&Manifest::new(), vec![subnet(250, "10.0.0.0/24")]);
        let old = subnet(250, "10.0.0.0/24").content;
        let changes = |seen: Observed| {
            reconcile_scope(&first.manifest, Crawl::Complete(vec![seen]), 2, |_| {
                Some(old.clone())
            })
            .changes
        };
        assert!(matches!(
            changes(subnet(201, "10.0.0.0/24")).as_slice(),
            [Change::Refreshed { .. }]
        ));
        let moved = changes(subnet(201, "10.0.1.0/24"));
        let [Change::Changed { diff, .. }] = moved.as_slice() else {
            panic!("a change: {moved:?}");
        };
        assert_eq!(
            diff.as_slice(),
            [FieldChange::Changed {
                path: "details.cidrBlock".into(),
                old: json!("10.0.0.0/24"),
                new: json!("10.0.1.0/24")
            }]
        );

        let database = |status: &str| json!({"family": "database", "status": status});
        assert!(recorded_diff(&database("available"), &database("backing-up")).is_empty());
        let server = |status: &str| json!({"family": "server", "status": status});
        assert_eq!(
            recorded_diff(&server("running"), &server("stopped")).len(),
            1
        );
        let group = |health: &str, port: i32| {
            json!({"family": "load-balancer",
                "details": {"targets": [{"id": "i-1", "port": port, "health": health}]}})
        };
        assert!(recorded_diff(&group("healthy", 80), &group("unhealthy", 80)).is_empty());
        assert_eq!(
            recorded_diff(&group("healthy", 80), &group("healthy", 81)).len(),
            1
        );
    }

    #[test]
    fn diffs_name_added_and_removed_fields_and_list_items() {
        let changes = diff(
            &json!({"a": 1, "list": [1, 2], "gone": true}),
            &json!({"a": 1, "list": [1], "new": "x"}),
        );
        assert_eq!(
            changes,
            [
                FieldChange::Removed {
                    path: "gone".into(),
                    old: json!(true)
                },
                FieldChange::Removed {
                    path: "list[1]".into(),
                    old: json!(2)
                },
                FieldChange::Added {
                    path: "new".into(),
                    new: json!("x")
                },
            ]
        );
    }
}
