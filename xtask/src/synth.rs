//! `cargo xtask synth [--stage S] [--check] [--diagram]`: the CloudFormation templates of the
//! typed topology (`stack/`), written under `templates/` and committed, so a review shows what
//! a change does to the infrastructure.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use stack::Stage;

use devenv::project_root;

#[derive(Args)]
pub struct Synth {
    /// Only this stage (local, dev, staging, prod); all stages by default.
    #[arg(long)]
    stage: Option<Stage>,
    /// Write nothing; fail when a committed template differs from what the code gives.
    #[arg(long)]
    check: bool,
    /// Print the stage's topology as a Mermaid flowchart (prod unless --stage) instead.
    #[arg(long)]
    diagram: bool,
    /// Print the stages' settings as a Markdown table (the one in docs/architecture.md) instead.
    #[arg(long)]
    stages: bool,
    /// Print each stage's database connection budget as a Markdown table (the README's) instead.
    #[arg(long)]
    budget: bool,
}

/// The committed templates' folder.
pub fn templates_dir() -> PathBuf {
    project_root().join("templates")
}

/// Every template of the stages, as (path under `templates/`, JSON text); the bootstrap
/// template, shared by the stages, once.
pub fn render(stages: &[Stage]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for stage in stages {
        for synthesized in stack::synth(*stage) {
            synthesized
                .template
                .check_references()
                .map_err(|e| anyhow::anyhow!("{} ({}): {e}", synthesized.file, synthesized.stack_name))?;
            if synthesized.file.ends_with("/stage.json") {
                // No stage may be configured to exhaust its database (stack::budget).
                stack::budget::of(&synthesized.template)
                    .and_then(|budget| budget.check())
                    .map_err(|e| anyhow::anyhow!("{} ({}): {e}", synthesized.file, synthesized.stack_name))?;
            }
            if !out.iter().any(|(file, _)| *file == synthesized.file) {
                out.push((synthesized.file, synthesized.template.to_json()));
            }
        }
    }
    Ok(out)
}

impl Synth {
    pub fn run(self) -> anyhow::Result<()> {
        if self.diagram {
            let stage = self.stage.unwrap_or(Stage::Prod);
            print!("{}", stack::diagram::mermaid(&stack::Topology::stage(&stage.config())));
            return Ok(());
        }
        if self.stages {
            print!("{}", stages_table());
            return Ok(());
        }
        if self.budget {
            print!("{}", budget_table()?);
            return Ok(());
        }
        let started = Instant::now();
        let stages: Vec<Stage> = self.stage.map(|s| vec![s]).unwrap_or_else(|| Stage::ALL.to_vec());
        let rendered = render(&stages)?;
        let elapsed = started.elapsed();
        let dir = templates_dir();
        if self.check {
            check_committed(&rendered, self.stage.is_none())?;
            println!("synth --check: {} templates match the code ({elapsed:.2?} to synthesize)", rendered.len());
            return Ok(());
        }
        for (file, text) in &rendered {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().expect("templates have a folder"))
                .with_context(|| format!("could not create {}", path.display()))?;
            std::fs::write(&path, text).with_context(|| format!("could not write {}", path.display()))?;
            println!("{:>9} bytes  templates/{file}", text.len());
        }
        println!("synthesized {} templates in {elapsed:.2?}", rendered.len());
        Ok(())
    }
}

/// Fails, naming the files, when the committed templates differ from `rendered`; with
/// `include_stray`, also when `templates/` holds a template no stage produces any more.
pub fn check_committed(rendered: &[(String, String)], include_stray: bool) -> anyhow::Result<()> {
    let dir = templates_dir();
    let mut drifted = Vec::new();
    for (file, text) in rendered {
        if std::fs::read_to_string(dir.join(file)).ok().as_deref() != Some(text.as_str()) {
            drifted.push(file.clone());
        }
    }
    if include_stray {
        for stray in stray_templates(&dir, rendered)? {
            drifted.push(format!("{stray} (no stage gives it)"));
        }
    }
    if !drifted.is_empty() {
        bail!(
            "the committed templates differ from the code: {}\nrun `cargo xtask synth` and commit templates/",
            drifted.join(", ")
        );
    }
    Ok(())
}

/// JSON files under `templates/` that no stage produces any more.
fn stray_templates(dir: &Path, rendered: &[(String, String)]) -> anyhow::Result<Vec<String>> {
    let mut stray = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let relative = path.strip_prefix(dir).expect("under the folder").to_string_lossy().replace('\\', "/");
                if !rendered.iter().any(|(file, _)| *file == relative) {
                    stray.push(relative);
                }
            }
        }
    }
    stray.sort();
    Ok(stray)
}

fn days(n: u32) -> String {
    if n == 1 { "1 day".to_owned() } else { format!("{n} days") }
}

/// A row of the stages table: how to show one setting of a stage.
type Row = Box<dyn Fn(&stack::StageConfig) -> String>;

/// The stages' settings side by side, as Markdown.
pub fn stages_table() -> String {
    let configs: Vec<stack::StageConfig> = Stage::ALL.iter().map(|s| s.config()).collect();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows: Vec<(&str, Row)> = vec![
        ("architecture", Box::new(|c| c.architecture.lambda().to_owned())),
        ("VPC", Box::new(|c| c.vpc_cidr.to_owned())),
        (
            "Lambda memory / timeout",
            Box::new(|c| format!("{} MB / {} s", c.lambda_memory_mb, c.lambda_timeout_seconds)),
        ),
        ("database class", Box::new(|c| c.db_instance_class.to_owned())),
        ("storage (autoscaling to)", Box::new(|c| format!("{} GB ({} GB)", c.db_storage_gb, c.db_max_storage_gb))),
        ("multi-AZ database", Box::new(move |c| yes_no(c.db_multi_az))),
        ("automated DB backups", Box::new(|c| days(c.db_backup_retention_days))),
        ("deletion protection", Box::new(move |c| yes_no(c.deletion_protection))),
        ("buckets on stack delete", Box::new(|c| if c.emulator { "deleted" } else { "retained" }.to_owned())),
        ("log retention", Box::new(|c| days(c.log_retention_days))),
        (
            "API tasks, autoscaled (CPU / memory)",
            Box::new(|c| format!("{}–{} ({} / {} MiB)", c.api_min_tasks, c.api_max_tasks, c.api_cpu, c.api_memory_mb)),
        ),
        (
            "reserved concurrency: validate / process / backup",
            Box::new(|c| {
                let f = c.function_concurrency;
                format!("{} / {} / {}", f.validate, f.process, f.backup)
            }),
        ),
        (
            "DB connections: at most / budget (max_connections)",
            Box::new(|c| match stack::budget::of(&stack::Topology::stage(c).template) {
                Ok(b) => format!("{} / {} ({})", b.total(), b.limit, b.max_connections),
                Err(e) => e,
            }),
        ),
        ("API Gateway rate / burst", Box::new(|c| format!("{} / {} req/s", c.api_rate_limit, c.api_burst_limit))),
        ("backup schedule (UTC)", Box::new(|c| format!("`{}`", c.backup_schedule))),
        (
            "pipeline",
            Box::new(|c| match c.pipeline_branch {
                Some(branch) if c.deletion_protection => format!("`{branch}`, manual approval"),
                Some(branch) => format!("`{branch}`"),
                None => "none (emulator)".to_owned(),
            }),
        ),
    ];
    let mut out = String::from("| setting |");
    for c in &configs {
        out.push_str(&format!(" {} |", c.stage));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(configs.len()));
    out.push('\n');
    for (name, value) in rows {
        out.push_str(&format!("| {name} |"));
        for c in &configs {
            out.push_str(&format!(" {} |", value(c)));
        }
        out.push('\n');
    }
    out
}

/// Each stage's connection budget (`stack::budget`), as Markdown: what each component may open
/// at most, against what the database class allows.
pub fn budget_table() -> anyhow::Result<String> {
    let mut out = String::from(
        "| stage | database (max_connections) | budget | API: tasks × connections | validate | process | backup | at most |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for stage in Stage::ALL {
        let budget =
            stack::budget::of(&stack::Topology::stage(&stage.config()).template).map_err(anyhow::Error::msg)?;
        let share = |id: &str| {
            budget
                .shares
                .iter()
                .find(|s| s.component == id)
                .map(|s| format!("{} × {}", s.instances, s.per_instance))
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "| {stage} | {} ({}) | {} | {} | {} | {} | {} | {} |\n",
            budget.class,
            budget.max_connections,
            budget.limit,
            share("api"),
            share("ValidateFunction"),
            share("ProcessFunction"),
            share("BackupFunction"),
            budget.total()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diagram and stages table of docs/architecture.md are the ones the code gives today.
    #[test]
    fn the_architecture_page_shows_the_current_diagram_and_stages_table() {
        let readme =
            std::fs::read_to_string(project_root().join("docs/architecture.md")).expect("docs/architecture.md");
        let diagram = stack::diagram::mermaid(&stack::Topology::stage(&Stage::Prod.config()));
        assert!(
            readme.contains(&diagram),
            "the diagram of docs/architecture.md is stale: paste `cargo xtask synth --diagram` into it"
        );
        assert!(
            readme.contains(&stages_table()),
            "the stages table of docs/architecture.md is stale: paste `cargo xtask synth --stages` into it"
        );
        let front = std::fs::read_to_string(project_root().join("README.md")).expect("README.md");
        assert!(
            front.contains(&budget_table().expect("every stage has a budget")),
            "the connection budget table of README.md is stale: paste `cargo xtask synth --budget` into it"
        );
    }
}
