//! The topology as a Mermaid flowchart, drawn from the declared grants and flows.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::iam::Access;
use crate::topology::Topology;

/// A Mermaid `flowchart LR` of the stage's components: data flows, then what each component's
/// role lets it touch (IAM grants), labelled with the access.
pub fn mermaid(topology: &Topology) -> String {
    let owner = |role: &str| {
        topology.role_owners.iter().find(|(r, _)| r.as_str() == role).map(|(_, owner)| owner.as_str().to_owned())
    };
    let mut edges: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut push = |from: String, label: String, to: String| {
        if edges.insert((from.clone(), label.clone(), to.clone())) {
            order.push((from, label, to));
        }
    };
    for flow in &topology.flows {
        push(flow.from.as_str().to_owned(), flow.label.to_owned(), flow.to.as_str().to_owned());
    }
    for grant in &topology.grants {
        let (Some(from), Some(to)) = (owner(grant.principal.as_str()), grant.target.node()) else { continue };
        // Log groups and the database secret would clutter the picture; the text lists them.
        if to.ends_with("LogGroup") || to == "Database" || from == to {
            continue;
        }
        let label = match grant.access {
            Access::Read if matches!(grant.target, crate::iam::Target::Function(_)) => "invokes",
            Access::Write if matches!(grant.target, crate::iam::Target::StateMachine(_)) => "starts",
            access => access.verb(),
        };
        push(from, label.to_owned(), to.to_owned());
    }
    let mut nodes = BTreeSet::new();
    for (from, _, to) in &order {
        nodes.insert(from.clone());
        nodes.insert(to.clone());
    }
    let mut out = String::from("flowchart LR\n");
    for node in &nodes {
        let kind = topology
            .template
            .resources
            .iter()
            .find(|(id, _)| id.as_str() == node)
            .map(|(_, r)| r.kind.as_str().trim_start_matches("AWS::").to_owned())
            .unwrap_or_else(|| "bootstrap stack".to_owned());
        // Stores (buckets, the database) as cylinders.
        let shape = if kind.starts_with("S3::") || kind.starts_with("RDS::") { ("[(", ")]") } else { ("[", "]") };
        writeln!(out, "  {node}{}\"{node}<br/><small>{kind}</small>\"{}", shape.0, shape.1)
            .expect("writing to a String");
    }
    for (from, label, to) in order {
        writeln!(out, "  {from} -->|{label}| {to}").expect("writing to a String");
    }
    out
}
