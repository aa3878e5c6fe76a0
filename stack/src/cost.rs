//! A stage's monthly cost, estimated from its synthesized template and the committed price
//! table `stack/prices/us-east-1.json` (region, date and sources named in it).
//!
//! The always-on resources are priced from what the template declares: the database instance
//! and its storage (twice with Multi-AZ), the API's Fargate tasks at the service's minimum
//! count, the load balancer (one LCU), the interface VPC endpoints per subnet, the secrets
//! (RDS's managed master secret included), the alarms and the dashboard. What depends on use (Lambda, API
//! Gateway, Step Functions, S3, logs, Athena, process tasks) is listed with its unit price,
//! not guessed into the total.

use serde::Deserialize;
use serde_json::Value;

use crate::template::{ResourceType, Template};

/// The committed price table.
pub const PRICES: &str = include_str!("../prices/us-east-1.json");

/// The price table's fields.
#[derive(Debug, Deserialize)]
pub struct Prices {
    pub region: String,
    pub currency: String,
    pub date: String,
    pub hours_per_month: f64,
    pub rds_instance_hour: std::collections::BTreeMap<String, f64>,
    pub rds_gp3_gb_month: f64,
    pub fargate_vcpu_hour: std::collections::BTreeMap<String, f64>,
    pub fargate_gb_hour: std::collections::BTreeMap<String, f64>,
    pub alb_hour: f64,
    pub alb_lcu_hour: f64,
    pub interface_endpoint_az_hour: f64,
    pub secret_month: f64,
    pub alarm_month: f64,
    pub dashboard_month: f64,
    /// (what, unit, price per unit).
    pub usage: Vec<(String, String, f64)>,
}

impl Prices {
    /// The committed table.
    pub fn committed() -> Prices {
        serde_json::from_str(PRICES).expect("stack/prices/us-east-1.json is a price table")
    }
}

/// One priced line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub item: String,
    pub quantity: String,
    pub monthly: f64,
}

/// The always-on lines of `template` and their total.
pub fn estimate(template: &Template, prices: &Prices) -> Result<(Vec<Line>, f64), String> {
    let hours = prices.hours_per_month;
    let of = |kind: ResourceType| template.resources.values().filter(move |r| r.kind == kind);
    let mut lines = Vec::new();
    for db in of(ResourceType::RdsDbInstance) {
        let p = &db.properties;
        let class = p["DBInstanceClass"].as_str().ok_or("the database has no literal DBInstanceClass")?;
        let hourly =
            prices.rds_instance_hour.get(class).ok_or_else(|| format!("no price for {class}: add it to the table"))?;
        let copies = if p["MultiAZ"] == Value::Bool(true) { 2.0 } else { 1.0 };
        let storage = number(&p["AllocatedStorage"]).ok_or("the database has no literal AllocatedStorage")?;
        lines.push(Line {
            item: format!("RDS {class}{}", if copies > 1.0 { ", Multi-AZ" } else { "" }),
            quantity: format!("{copies} × {hours} h"),
            monthly: copies * hourly * hours,
        });
        lines.push(Line {
            item: "RDS gp3 storage".into(),
            quantity: format!("{copies} × {storage} GB"),
            monthly: copies * storage * prices.rds_gp3_gb_month,
        });
    }
    let min_tasks = of(ResourceType::AutoScalingTarget)
        .find_map(|t| number(&t.properties["MinCapacity"]))
        .or_else(|| of(ResourceType::EcsService).find_map(|s| number(&s.properties["DesiredCount"])))
        .unwrap_or(1.0);
    if let Some(api) = template.resource("ApiTaskDefinition") {
        let p = &api.properties;
        let vcpu = number(&p["Cpu"]).ok_or("the API task has no Cpu")? / 1024.0;
        let gb = number(&p["Memory"]).ok_or("the API task has no Memory")? / 1024.0;
        let arch = p["RuntimePlatform"]["CpuArchitecture"].as_str().unwrap_or("X86_64");
        let (cpu_price, gb_price) = (
            prices.fargate_vcpu_hour.get(arch).ok_or_else(|| format!("no Fargate price for {arch}"))?,
            prices.fargate_gb_hour.get(arch).ok_or_else(|| format!("no Fargate price for {arch}"))?,
        );
        lines.push(Line {
            item: format!("Fargate API tasks ({arch}, {vcpu} vCPU, {gb} GB)"),
            quantity: format!("{min_tasks} × {hours} h"),
            monthly: min_tasks * (vcpu * cpu_price + gb * gb_price) * hours,
        });
    }
    let balancers = of(ResourceType::LoadBalancer).count() as f64;
    if balancers > 0.0 {
        lines.push(Line {
            item: "Application Load Balancer (1 LCU)".into(),
            quantity: format!("{balancers} × {hours} h"),
            monthly: balancers * (prices.alb_hour + prices.alb_lcu_hour) * hours,
        });
    }
    let endpoint_azs: f64 = of(ResourceType::Ec2VpcEndpoint)
        .filter(|e| e.properties["VpcEndpointType"] == "Interface")
        .map(|e| e.properties["SubnetIds"].as_array().map_or(1, Vec::len) as f64)
        .sum();
    if endpoint_azs > 0.0 {
        lines.push(Line {
            item: "Interface VPC endpoints".into(),
            quantity: format!("{endpoint_azs} endpoint-AZs × {hours} h"),
            monthly: endpoint_azs * prices.interface_endpoint_az_hour * hours,
        });
    }
    // Priced per resource a month: the secrets (RDS's managed master secret counted with them),
    // the alarms, the dashboards.
    let managed = of(ResourceType::RdsDbInstance).filter(|d| d.properties["ManageMasterUserPassword"] == true).count();
    for (item, count, price) in [
        ("Secrets Manager secrets", of(ResourceType::SecretsManagerSecret).count() + managed, prices.secret_month),
        ("CloudWatch alarms", of(ResourceType::CloudWatchAlarm).count(), prices.alarm_month),
        ("CloudWatch dashboards", of(ResourceType::CloudWatchDashboard).count(), prices.dashboard_month),
    ] {
        if count > 0 {
            lines.push(Line { item: item.into(), quantity: count.to_string(), monthly: count as f64 * price });
        }
    }
    let total = lines.iter().map(|l| l.monthly).sum();
    Ok((lines, total))
}

/// A property's number, literal or as text (`"256"`).
fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The estimate as a Markdown table, with the usage-priced services after it.
pub fn render(stack_name: &str, lines: &[Line], total: f64, prices: &Prices) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{stack_name}: always-on resources, {} on-demand prices of {} ({}, stack/prices/us-east-1.json)\n\n",
        prices.currency, prices.date, prices.region
    );
    let _ = writeln!(out, "| item | quantity | per month |\n|---|---|---|");
    for line in lines {
        let _ = writeln!(out, "| {} | {} | {:.2} |", line.item, line.quantity, line.monthly);
    }
    let _ = writeln!(out, "| **total** | | **{total:.2}** |\n\nAnd by use (not in the total):\n");
    let _ = writeln!(out, "| service | unit | price |\n|---|---|---|");
    for (what, unit, price) in &prices.usage {
        let _ = writeln!(out, "| {what} | {unit} | {price} |");
    }
    out
}
