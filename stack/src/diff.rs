//! What deploying a template would change, computed offline from the deployed template and the
//! synthesized one (`cargo xtask diff --offline`; the change-set diff renders the same way).
//!
//! For each resource: Add, Modify or Remove; whether CloudFormation replaces it (a changed
//! property the registry schema marks `createOnlyProperties`: `Always`; a changed property
//! whose value CloudFormation computes at deploy time, such as a `Ref`: `Conditional`);
//! whether the change broadens access (an IAM statement, a managed policy or a security
//! group rule that was not there before); and whether the resource holds data (a database or
//! a bucket), so its replacement or removal needs an operator's approval.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The registry's create-only properties of every type the stack uses
/// (`stack/registry/create-only.json`, extracted from cfn-lint's bundled schemas).
pub fn create_only() -> &'static BTreeMap<String, BTreeSet<String>> {
    static TABLE: OnceLock<BTreeMap<String, BTreeSet<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("../registry/create-only.json")).expect("create-only.json is valid JSON")
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Add,
    Modify,
    Remove,
}

/// Whether an update replaces the resource (a new physical resource, the old one deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Replacement {
    Never,
    /// Depends on a value known only at deploy time.
    Conditional,
    Always,
}

/// One resource's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceChange {
    pub id: String,
    pub kind: String,
    pub action: Action,
    pub replacement: Replacement,
    /// The top-level properties that differ (Modify only).
    pub properties: Vec<String>,
    /// What the change newly allows: IAM statements, managed policies, security group rules.
    pub broadens: Vec<String>,
    /// The resource holds data: a database or a bucket.
    pub stateful: bool,
}

impl ResourceChange {
    /// Replacing or removing a resource that holds data, or broadening access, needs an
    /// operator's approval before deploying.
    pub fn needs_approval(&self) -> bool {
        !self.broadens.is_empty()
            || (self.stateful && (self.action == Action::Remove || self.replacement != Replacement::Never))
    }
}

const STATEFUL: [&str; 2] = ["AWS::RDS::DBInstance", "AWS::S3::Bucket"];

/// The template's resources as deployed: without `Metadata`, which `deploy` does not send
/// (`template::deployable`), so it is never a change.
fn resources(template: &Value) -> Map<String, Value> {
    let mut resources = template.get("Resources").and_then(Value::as_object).cloned().unwrap_or_default();
    for resource in resources.values_mut() {
        if let Some(resource) = resource.as_object_mut() {
            resource.remove("Metadata");
        }
    }
    resources
}

/// The changes from `deployed` to `synthesized` (both CloudFormation templates as JSON), in
/// logical id order.
pub fn diff(deployed: &Value, synthesized: &Value) -> Vec<ResourceChange> {
    let old = resources(deployed);
    let new = resources(synthesized);
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes = Vec::new();
    for id in ids {
        let (before, after) = (old.get(id), new.get(id));
        if before == after {
            continue;
        }
        let kind = after.or(before).and_then(|r| r["Type"].as_str()).unwrap_or("?").to_owned();
        let stateful = STATEFUL.contains(&kind.as_str());
        let empty = Value::Object(Map::new());
        let props = |r: Option<&Value>| r.and_then(|r| r.get("Properties")).unwrap_or(&empty).clone();
        let (old_props, new_props) = (props(before), props(after));
        let mut change = ResourceChange {
            id: id.clone(),
            kind: kind.clone(),
            action: match (before, after) {
                (None, _) => Action::Add,
                (_, None) => Action::Remove,
                _ => Action::Modify,
            },
            replacement: Replacement::Never,
            properties: Vec::new(),
            broadens: broadening(&kind, &old_props, &new_props),
            stateful,
        };
        if change.action == Action::Modify {
            if before.map(|r| &r["Type"]) != after.map(|r| &r["Type"]) {
                change.replacement = Replacement::Always;
            }
            let names: BTreeSet<&String> =
                old_props.as_object().into_iter().chain(new_props.as_object()).flat_map(|m| m.keys()).collect();
            let create_only = create_only().get(&kind);
            for name in names {
                let (a, b) = (old_props.get(name), new_props.get(name));
                if a == b {
                    continue;
                }
                change.properties.push(name.clone());
                if create_only.is_some_and(|set| set.contains(name)) {
                    let computed = [a, b].into_iter().flatten().any(has_intrinsic);
                    let replacement = if computed { Replacement::Conditional } else { Replacement::Always };
                    change.replacement = change.replacement.max(replacement);
                }
            }
        }
        changes.push(change);
    }
    changes
}

/// Whether a value is computed by CloudFormation (`Ref`, `Fn::…`).
fn has_intrinsic(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.keys().any(|k| k == "Ref" || k.starts_with("Fn::")) || map.values().any(has_intrinsic)
        }
        Value::Array(items) => items.iter().any(has_intrinsic),
        _ => false,
    }
}

/// What `new` allows that `old` did not.
fn broadening(kind: &str, old: &Value, new: &Value) -> Vec<String> {
    match kind {
        "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
            let before = grants(old);
            let mut out: Vec<String> = grants(new).difference(&before).cloned().collect();
            let managed = |v: &Value| -> BTreeSet<String> {
                v["ManagedPolicyArns"].as_array().into_iter().flatten().map(compact).collect()
            };
            out.extend(managed(new).difference(&managed(old)).map(|arn| format!("managed policy {arn}")));
            out
        }
        "AWS::EC2::SecurityGroup" => {
            let rules = |v: &Value, key: &str| -> BTreeSet<String> {
                v[key].as_array().into_iter().flatten().map(rule_text).collect()
            };
            let mut out = Vec::new();
            for (key, direction) in [("SecurityGroupIngress", "in"), ("SecurityGroupEgress", "out")] {
                out.extend(rules(new, key).difference(&rules(old, key)).map(|r| format!("{direction}: {r}")));
            }
            out
        }
        "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" if old != new => {
            vec![format!("rule {}", rule_text(new))]
        }
        _ => Vec::new(),
    }
}

/// "action on resource" for every allowed pair of a role's or policy's documents.
fn grants(properties: &Value) -> BTreeSet<String> {
    let mut documents: Vec<&Value> =
        properties["Policies"].as_array().into_iter().flatten().map(|p| &p["PolicyDocument"]).collect();
    documents.push(&properties["PolicyDocument"]);
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(items) => items.iter().map(compact).collect(),
            Value::Null => Vec::new(),
            other => vec![compact(other)],
        }
    };
    let mut out = BTreeSet::new();
    for statement in documents.into_iter().flat_map(|d| d["Statement"].as_array().cloned().unwrap_or_default()) {
        if statement["Effect"] != "Allow" {
            continue;
        }
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.insert(format!("{action} on {resource}"));
            }
        }
    }
    out
}

fn rule_text(rule: &Value) -> String {
    let source =
        ["CidrIp", "CidrIpv6", "SourceSecurityGroupId", "DestinationSecurityGroupId", "DestinationPrefixListId"]
            .iter()
            .find_map(|k| rule.get(*k).map(|v| format!("{k} {}", compact(v))))
            .unwrap_or_else(|| "anywhere".to_owned());
    format!("{} {}-{} {source}", compact(&rule["IpProtocol"]), compact(&rule["FromPort"]), compact(&rule["ToPort"]))
}

/// A value on one line: strings bare, anything else as compact JSON.
fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The changes as text, one line per resource with its details indented below, and a
/// summary line.
pub fn render(changes: &[ResourceChange]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let mut out = String::new();
    for change in changes {
        let sign = match change.action {
            Action::Add => "+",
            Action::Modify => "~",
            Action::Remove => "-",
        };
        let mut notes = Vec::new();
        match change.replacement {
            Replacement::Always => notes.push("REPLACED".to_owned()),
            Replacement::Conditional => notes.push("may be replaced".to_owned()),
            Replacement::Never => {}
        }
        if change.stateful && (change.action == Action::Remove || change.replacement != Replacement::Never) {
            notes.push("holds data".to_owned());
        }
        if !change.broadens.is_empty() {
            notes.push("broadens access".to_owned());
        }
        let notes = if notes.is_empty() { String::new() } else { format!("  [{}]", notes.join(", ")) };
        writeln!(out, "{sign} {} ({}){notes}", change.id, change.kind).expect("writing to a String");
        if !change.properties.is_empty() {
            writeln!(out, "    changed: {}", change.properties.join(", ")).expect("writing to a String");
        }
        for grant in &change.broadens {
            writeln!(out, "    allows: {grant}").expect("writing to a String");
        }
    }
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    writeln!(
        out,
        "{} to add, {} to modify ({} replaced), {} to remove; {} need approval",
        count(Action::Add),
        count(Action::Modify),
        changes.iter().filter(|c| c.replacement != Replacement::Never).count(),
        count(Action::Remove),
        changes.iter().filter(|c| c.needs_approval()).count(),
    )
    .expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Stage;
    use crate::topology::Topology;

    fn local() -> Value {
        serde_json::from_str(&Topology::stage(&Stage::Local.config()).template.to_json()).expect("JSON")
    }

    #[test]
    fn the_same_template_changes_nothing() {
        assert!(diff(&local(), &local()).is_empty());
        assert_eq!(render(&[]), "no changes\n");
    }

    #[test]
    fn a_first_deploy_adds_everything_and_a_removed_resource_is_a_removal() {
        let changes = diff(&json!({}), &local());
        assert!(changes.iter().all(|c| c.action == Action::Add));
        assert_eq!(changes.len(), local()["Resources"].as_object().unwrap().len());
        let mut without = local();
        without["Resources"].as_object_mut().unwrap().remove("BackupsBucket");
        let changes = diff(&local(), &without);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].action, Action::Remove);
        assert!(changes[0].needs_approval(), "removing a bucket needs approval");
    }

    #[test]
    fn a_create_only_property_replaces_and_a_database_replacement_needs_approval() {
        let mut renamed = local();
        renamed["Resources"]["Database"]["Properties"]["DBName"] = json!("renamed");
        let changes = diff(&local(), &renamed);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].action, changes[0].replacement), (Action::Modify, Replacement::Always));
        assert_eq!(changes[0].properties, ["DBName"]);
        assert!(changes[0].needs_approval());
        assert!(render(&changes).contains("~ Database (AWS::RDS::DBInstance)  [REPLACED, holds data]"));

        let mut resized = local();
        resized["Resources"]["Database"]["Properties"]["DBInstanceClass"] = json!("db.m7g.large");
        let changes = diff(&local(), &resized);
        assert_eq!(changes[0].replacement, Replacement::Never, "an instance class change is in place");
        assert!(!changes[0].needs_approval());
    }

    #[test]
    fn a_computed_create_only_value_may_replace() {
        let mut moved = local();
        moved["Resources"]["Database"]["Properties"]["DBSubnetGroupName"] = json!({ "Ref": "Other" });
        assert_eq!(diff(&local(), &moved)[0].replacement, Replacement::Conditional);
    }

    #[test]
    fn a_new_iam_statement_or_ingress_rule_broadens_access_and_a_narrower_one_does_not() {
        let mut wider = local();
        wider["Resources"]["ProcessRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::x/*" }));
        wider["Resources"]["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "CidrIp": "10.0.0.0/8" }));
        let changes = diff(&local(), &wider);
        let role = changes.iter().find(|c| c.id == "ProcessRole").unwrap();
        assert_eq!(role.broadens, ["s3:DeleteObject on arn:aws:s3:::x/*"]);
        let group = changes.iter().find(|c| c.id == "DatabaseSecurityGroup").unwrap();
        assert_eq!(group.broadens, ["in: tcp 5432-5432 CidrIp 10.0.0.0/8"]);
        assert!(render(&changes).contains("allows: s3:DeleteObject on arn:aws:s3:::x/*"));

        // Removing a statement narrows: a change, but nothing to approve.
        let mut narrower = local();
        narrower["Resources"]["ProcessRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .unwrap()
            .pop();
        let changes = diff(&local(), &narrower);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].broadens.is_empty() && !changes[0].needs_approval());
    }

    #[test]
    fn metadata_is_not_a_change() {
        let mut annotated = local();
        annotated["Resources"]["RawBucket"]["Metadata"] = json!({ "checkov": { "skip": [{ "id": "CKV_AWS_18" }] } });
        let deployed: Value = serde_json::from_str(&crate::template::deployable(&annotated)).unwrap();
        assert!(diff(&deployed, &annotated).is_empty());
    }

    #[test]
    fn every_resource_type_has_its_registry_entry() {
        let types: BTreeSet<String> = local()["Resources"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| r["Type"].as_str().unwrap().to_owned())
            .collect();
        for kind in types {
            assert!(create_only().contains_key(&kind), "{kind} is missing from stack/registry/create-only.json");
        }
    }
}
