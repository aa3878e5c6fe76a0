//! `cargo xtask cost`: the always-on cost of a stage from its template and
//! the committed price table, against stages computed by hand from the table's prices.

use stack::cost::{Prices, estimate};
use stack::{Stage, Topology};

fn total(stage: Stage) -> (Vec<stack::cost::Line>, f64) {
    estimate(&Topology::stage(&stage.config()).template, &Prices::committed()).expect("every price is in the table")
}

#[test]
fn dev_costs_what_the_prices_say_by_hand() {
    // db.t4g.micro 0.016 × 730 h; 20 GB gp3 × 0.115; one x86 task of 0.25 vCPU and 0.5 GB:
    // (0.25 × 0.04048 + 0.5 × 0.004445) × 730; the load balancer (0.0225 + 0.008 LCU) × 730;
    // 4 interface endpoints × 2 subnets × 0.01 × 730; 2 secrets + RDS's managed one × 0.40;
    // 10 alarms × 0.10; one dashboard, 3.00.
    let by_hand = 11.68 + 2.30 + 9.010025 + 22.265 + 58.40 + 1.20 + 1.00 + 3.00;
    let (lines, computed) = total(Stage::Dev);
    assert!((computed - by_hand).abs() < 0.005, "{computed} against {by_hand}: {lines:#?}");
    assert_eq!(lines.len(), 8);
}

#[test]
fn prod_costs_what_the_prices_say_by_hand() {
    // db.m7g.large Multi-AZ: 2 × 0.168 × 730; 2 × 100 GB × 0.115; two arm64 tasks of 0.5 vCPU
    // and 1 GB: 2 × (0.5 × 0.03238 + 1 × 0.00356) × 730; the rest as in dev.
    let by_hand = 245.28 + 23.0 + 28.835 + 22.265 + 58.40 + 1.20 + 1.00 + 3.00;
    let (lines, computed) = total(Stage::Prod);
    assert!((computed - by_hand).abs() < 0.005, "{computed} against {by_hand}: {lines:#?}");
}

#[test]
fn every_stage_is_priced_and_the_table_names_its_region_date_and_sources() {
    let prices = Prices::committed();
    assert_eq!((prices.region.as_str(), prices.currency.as_str()), ("us-east-1", "USD"));
    assert!(prices.date.starts_with("2026-"), "{}", prices.date);
    let raw: serde_json::Value = serde_json::from_str(stack::cost::PRICES).unwrap();
    assert!(raw["sources"].as_object().is_some_and(|s| s.len() >= 8));
    for stage in Stage::ALL {
        let (lines, computed) = total(stage);
        // The emulator stage runs no API task (min 0): that line is 0, the others are not.
        assert!(computed > 0.0 && lines.iter().filter(|l| l.monthly == 0.0).count() <= 1, "{stage}: {lines:#?}");
        let text = stack::cost::render(&stage.stack_name(), &lines, computed, &prices);
        assert!(text.contains(&format!("**{computed:.2}**")) && text.contains("Athena queries"), "{text}");
    }
}
