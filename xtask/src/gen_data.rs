//! `cargo xtask gen-data --rows N [--bad FRACTION] [--seed S] [--out DIR]`: writes synthetic
//! `departments.csv`, `jobs.csv` and `hired_employees.csv` in the format of the real files (no
//! header, LF), plus a `manifest.json` with what a correct load of them must report.
//!
//! The output depends only on (rows, bad, seed), byte for byte, forever: the random numbers
//! come from SplitMix64, written out below, not from a crate whose algorithms may change.
//! Hire times are uniform over 2020-01-01..2023-01-01 (so 2021 holds about a third); the
//! department and job of a hire follow skewed (Zipf-like) distributions, so "departments hiring
//! above the mean" picks some departments and not others. Every row draws the same random
//! numbers whether or not it is broken, so the valid rows of a file with `--bad` are exactly
//! the same rows of the clean file with the same seed.
//!
//! With `--bad F`, a fraction F of the hire rows (spread evenly) breaks exactly one rule,
//! cycling through [`Bad::ALL`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

#[derive(clap::Args)]
pub struct GenData {
    /// The number of rows of hired_employees.csv.
    #[arg(long)]
    rows: u64,
    /// The fraction of hire rows that break a rule, from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    bad: f64,
    /// The seed of the random numbers; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The output folder [default: <target>/data/gen-<rows>-<bad>-<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
}

impl GenData {
    pub fn run(self) -> anyhow::Result<()> {
        let spec = Spec::new(self.rows, self.bad, self.seed)?;
        let out = self.out.unwrap_or_else(|| {
            devenv::target_dir().join("data").join(format!("gen-{}-{}-{}", spec.rows, spec.bad, spec.seed))
        });
        let started = Instant::now();
        let manifest = generate(&spec, &out)?;
        println!(
            "wrote {} hire rows ({} valid, {} broken; {} valid in 2021) in {:.1}s",
            manifest.rows,
            manifest.valid_rows,
            manifest.bad_rows,
            manifest.valid_hires_2021,
            started.elapsed().as_secs_f64()
        );
        println!("{}", out.display());
        Ok(())
    }
}

/// Writes the three CSV files and `manifest.json` into `out` (created if missing) and returns
/// the manifest.
pub fn generate(spec: &Spec, out: &Path) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    write_file(out, "departments.csv", write_departments)?;
    write_file(out, "jobs.csv", write_jobs)?;
    let mut manifest = None;
    write_file(out, "hired_employees.csv", |file| {
        manifest = Some(write_hires(spec, file)?);
        Ok(())
    })?;
    let manifest = manifest.expect("write_file ran the writer");
    let json = serde_json::to_string_pretty(&manifest).context("failed to serialize the manifest")?;
    std::fs::write(out.join("manifest.json"), json + "\n").context("failed to write manifest.json")?;
    Ok(manifest)
}

fn write_file(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let path = dir.join(name);
    let file = File::create(&path).with_context(|| format!("failed to create {}", path.display()))?;
    let mut file = BufWriter::with_capacity(1 << 20, file);
    write(&mut file).and_then(|()| file.flush()).with_context(|| format!("failed to write {}", path.display()))
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    rows: u64,
    bad: f64,
    seed: u64,
}

impl Spec {
    pub fn new(rows: u64, bad: f64, seed: u64) -> anyhow::Result<Spec> {
        if !(0.0..=1.0).contains(&bad) {
            bail!("--bad must be a fraction from 0 to 1, not {bad}");
        }
        if rows > i32::MAX as u64 {
            bail!("--rows must fit a PostgreSQL integer id (at most {})", i32::MAX);
        }
        Ok(Spec { rows, bad, seed })
    }

    /// The exact number of broken rows.
    fn bad_rows(&self) -> u64 {
        ((self.rows as f64) * self.bad).round() as u64
    }
}

pub const DEPARTMENTS: [&str; 12] = [
    "Product Management",
    "Sales",
    "Research and Development",
    "Business Development",
    "Engineering",
    "Human Resources",
    "Services",
    "Support",
    "Marketing",
    "Training",
    "Legal",
    "Accounting",
];

/// Job titles; each comes in [`JOB_LEVELS`] levels, making 200 jobs.
const JOB_TITLES: [&str; 40] = [
    "Account Executive",
    "Accountant",
    "Administrative Assistant",
    "Analyst Programmer",
    "Assistant Manager",
    "Biostatistician",
    "Business Systems Development Analyst",
    "Chief Design Engineer",
    "Civil Engineer",
    "Compensation Analyst",
    "Computer Systems Analyst",
    "Cost Accountant",
    "Data Coordinator",
    "Database Administrator",
    "Design Engineer",
    "Developer",
    "Environmental Specialist",
    "Financial Advisor",
    "Financial Analyst",
    "GIS Technical Architect",
    "Geological Engineer",
    "Graphic Designer",
    "Human Resources Manager",
    "Internal Auditor",
    "Legal Assistant",
    "Marketing Assistant",
    "Marketing Manager",
    "Nurse Practicioner",
    "Office Assistant",
    "Operator",
    "Paralegal",
    "Product Engineer",
    "Programmer Analyst",
    "Quality Engineer",
    "Recruiting Manager",
    "Research Associate",
    "Sales Representative",
    "Software Consultant",
    "Software Engineer",
    "Systems Administrator",
];

const JOB_LEVELS: [&str; 5] = ["", " I", " II", " III", " IV"];

/// The number of jobs written to jobs.csv.
pub const JOBS: usize = JOB_TITLES.len() * JOB_LEVELS.len();

const FIRST_NAMES: [&str; 48] = [
    "Aaron",
    "Abigail",
    "Adrian",
    "Aisha",
    "Alejandro",
    "Amelia",
    "Andrea",
    "Ben",
    "Camila",
    "Carlos",
    "Chen",
    "Chloe",
    "Daniel",
    "Diego",
    "Elena",
    "Emma",
    "Fatima",
    "Felipe",
    "Grace",
    "Hannah",
    "Hiroshi",
    "Isabella",
    "Ivan",
    "Jamal",
    "Julia",
    "Kenji",
    "Laura",
    "Liam",
    "Lucas",
    "Maria",
    "Mateo",
    "Mei",
    "Miguel",
    "Nadia",
    "Noah",
    "Olivia",
    "Omar",
    "Priya",
    "Rafael",
    "Sara",
    "Sofia",
    "Tomas",
    "Valentina",
    "Victor",
    "William",
    "Yara",
    "Yusuf",
    "Zoe",
];

const LAST_NAMES: [&str; 48] = [
    "Abbott",
    "Alvarez",
    "Andersen",
    "Baker",
    "Brown",
    "Castillo",
    "Chen",
    "Costa",
    "Diaz",
    "Dubois",
    "Evans",
    "Fernandez",
    "Fischer",
    "Garcia",
    "Gomez",
    "Gonzalez",
    "Hansen",
    "Hernandez",
    "Ito",
    "Jensen",
    "Kim",
    "Kowalski",
    "Lee",
    "Lopez",
    "Martin",
    "Martinez",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Patel",
    "Perez",
    "Ramirez",
    "Rossi",
    "Sanchez",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Torres",
    "Vargas",
    "Wagner",
    "Wang",
    "Williams",
];

/// Names as a Latin-1 file would carry them: not valid UTF-8.
const LATIN1_NAMES: [&[u8]; 4] =
    [b"Jos\xe9 Garc\xeda", b"Fran\xe7ois M\xfcller", b"Jo\xe3o Concei\xe7\xe3o", b"Ren\xe9e L\xf3pez"];

/// The first hire day (2020-01-01) and the number of days covered (2020, 2021 and 2022).
const FIRST_YEAR: u32 = 2020;
const DAYS: u64 = 366 + 365 + 365;
/// The days of 2021, counted from 2020-01-01.
const DAYS_2021: std::ops::Range<u64> = 366..366 + 365;
/// An id no department and no job has.
const UNKNOWN_ID: &str = "9999";

/// The ways a hire row is broken; each breaks exactly one rule of the data contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    EmptyId,
    EmptyName,
    EmptyDatetime,
    EmptyDepartmentId,
    EmptyJobId,
    BlankName,
    TooFewFields,
    TooManyFields,
    IdNotInteger,
    IdZero,
    IdNegative,
    IdBeyondI32,
    IdFloat,
    ImpossibleDatetime,
    NotADatetime,
    UnknownDepartment,
    UnknownJob,
    DuplicateId,
    InvalidUtf8Name,
    NameTooLong,
}

impl Bad {
    pub const ALL: [Bad; 20] = [
        Bad::EmptyId,
        Bad::EmptyName,
        Bad::EmptyDatetime,
        Bad::EmptyDepartmentId,
        Bad::EmptyJobId,
        Bad::BlankName,
        Bad::TooFewFields,
        Bad::TooManyFields,
        Bad::IdNotInteger,
        Bad::IdZero,
        Bad::IdNegative,
        Bad::IdBeyondI32,
        Bad::IdFloat,
        Bad::ImpossibleDatetime,
        Bad::NotADatetime,
        Bad::UnknownDepartment,
        Bad::UnknownJob,
        Bad::DuplicateId,
        Bad::InvalidUtf8Name,
        Bad::NameTooLong,
    ];

    /// The name used in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Bad::EmptyId => "empty_id",
            Bad::EmptyName => "empty_name",
            Bad::EmptyDatetime => "empty_datetime",
            Bad::EmptyDepartmentId => "empty_department_id",
            Bad::EmptyJobId => "empty_job_id",
            Bad::BlankName => "blank_name",
            Bad::TooFewFields => "too_few_fields",
            Bad::TooManyFields => "too_many_fields",
            Bad::IdNotInteger => "id_not_integer",
            Bad::IdZero => "id_zero",
            Bad::IdNegative => "id_negative",
            Bad::IdBeyondI32 => "id_beyond_i32",
            Bad::IdFloat => "id_float",
            Bad::ImpossibleDatetime => "impossible_datetime",
            Bad::NotADatetime => "not_a_datetime",
            Bad::UnknownDepartment => "unknown_department",
            Bad::UnknownJob => "unknown_job",
            Bad::DuplicateId => "duplicate_id",
            Bad::InvalidUtf8Name => "invalid_utf8_name",
            Bad::NameTooLong => "name_too_long",
        }
    }

    /// The reject reason code the loader must give the row (`hiring::reject::Reason::code`).
    pub fn reason(self) -> &'static str {
        match self {
            Bad::EmptyId
            | Bad::EmptyName
            | Bad::EmptyDatetime
            | Bad::EmptyDepartmentId
            | Bad::EmptyJobId
            | Bad::BlankName => "missing_field",
            Bad::TooFewFields | Bad::TooManyFields => "wrong_field_count",
            Bad::IdNotInteger | Bad::IdZero | Bad::IdNegative | Bad::IdBeyondI32 | Bad::IdFloat => "invalid_id",
            Bad::ImpossibleDatetime | Bad::NotADatetime => "invalid_datetime",
            Bad::UnknownDepartment => "unknown_department",
            Bad::UnknownJob => "unknown_job",
            Bad::DuplicateId => "duplicate_id",
            Bad::InvalidUtf8Name => "invalid_utf8",
            Bad::NameTooLong => "field_too_long",
        }
    }
}

/// What a correct load of the generated files must report.
#[derive(Debug, Serialize, PartialEq)]
pub struct Manifest {
    pub seed: u64,
    pub bad_fraction: f64,
    pub departments: usize,
    pub jobs: usize,
    /// The rows of hired_employees.csv.
    pub rows: u64,
    pub valid_rows: u64,
    pub bad_rows: u64,
    /// Broken rows by the way they are broken (every kind listed, zeros included).
    pub bad_by_kind: BTreeMap<&'static str, u64>,
    /// Broken rows by the reject reason code the loader must give them.
    pub rejects_by_reason: BTreeMap<&'static str, u64>,
    /// Valid rows hired in 2021 (UTC), the year the metrics default to.
    pub valid_hires_2021: u64,
    pub valid_hires_2021_by_quarter: [u64; 4],
    /// Valid 2021 hires by department id.
    pub valid_hires_2021_by_department: BTreeMap<u32, u64>,
    /// The answer of "departments above the mean" for 2021: ids by hires descending, then id.
    pub departments_above_mean_2021: Vec<u32>,
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for test data, and fixed here
/// so the output never changes with a dependency upgrade.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (multiply-shift; the bias, below 2^-40 here, does not matter).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// A skewed choice of an id in `1..=n`: rank k has weight `weight(k)`, and the ranks are dealt
/// to ids in a shuffled order so the busiest department is not always id 1. The weights use
/// only correctly rounded operations (division, square root; not `powf`), so the thresholds
/// are the same on every platform.
struct Skewed {
    /// Cumulative thresholds on the u64 range, one per id; the last is u64::MAX.
    thresholds: Vec<u64>,
    ids: Vec<u32>,
}

impl Skewed {
    fn new(n: usize, weight: fn(f64) -> f64, random: &mut SplitMix64) -> Skewed {
        let mut ids: Vec<u32> = (1..=n as u32).collect();
        for i in (1..n).rev() {
            ids.swap(i, random.below(i as u64 + 1) as usize);
        }
        let weights: Vec<f64> = (1..=n).map(|rank| weight(rank as f64)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let mut thresholds: Vec<u64> = weights
            .iter()
            .map(|weight| {
                cumulative += weight;
                (cumulative / total * u64::MAX as f64) as u64
            })
            .collect();
        *thresholds.last_mut().expect("n > 0") = u64::MAX;
        Skewed { thresholds, ids }
    }

    fn pick(&self, random: &mut SplitMix64) -> u32 {
        let draw = random.next_u64();
        let rank = self.thresholds.partition_point(|&threshold| threshold < draw);
        self.ids[rank]
    }
}

pub fn write_departments(out: &mut impl Write) -> io::Result<()> {
    for (id, name) in DEPARTMENTS.iter().enumerate() {
        writeln!(out, "{},{name}", id + 1)?;
    }
    Ok(())
}

pub fn write_jobs(out: &mut impl Write) -> io::Result<()> {
    let mut id = 0;
    for title in JOB_TITLES {
        for level in JOB_LEVELS {
            id += 1;
            writeln!(out, "{id},{title}{level}")?;
        }
    }
    Ok(())
}

/// Writes the hire rows and returns the manifest.
pub fn write_hires(spec: &Spec, out: &mut impl Write) -> io::Result<Manifest> {
    let mut random = SplitMix64(spec.seed);
    // Departments 1/sqrt(k): four of twelve hire above the mean. Jobs 1/k: a long tail.
    let departments = Skewed::new(DEPARTMENTS.len(), |k| 1.0 / k.sqrt(), &mut random);
    let jobs = Skewed::new(JOBS, |k| 1.0 / k, &mut random);
    let days = day_table();

    let bad_total = spec.bad_rows();
    let mut bad_by_kind = [0u64; Bad::ALL.len()];
    // Spreads the broken rows evenly (Bresenham): a row is broken when the accumulator wraps.
    let mut accumulator = 0u64;
    let mut next_kind = 0usize;
    let mut last_valid_id = None;
    let (mut hires_2021_by_quarter, mut hires_2021_by_department) = ([0u64; 4], [0u64; 12]);
    let mut line = Vec::with_capacity(4096);

    for id in 1..=spec.rows {
        let first = FIRST_NAMES[random.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[random.below(LAST_NAMES.len() as u64) as usize];
        let second = random.below(DAYS * 86_400);
        let department = departments.pick(&mut random);
        let job = jobs.pick(&mut random);
        let (day, second_of_day) = (second / 86_400, second % 86_400);

        accumulator += bad_total;
        let broken = accumulator >= spec.rows;
        if broken {
            accumulator -= spec.rows;
        }

        line.clear();
        if !broken {
            push_number(&mut line, id);
            line.push(b',');
            push_name(&mut line, first, last);
            line.push(b',');
            push_datetime(&mut line, &days[day as usize], second_of_day);
            line.push(b',');
            push_number(&mut line, department.into());
            line.push(b',');
            push_number(&mut line, job.into());
            line.push(b'\n');
            out.write_all(&line)?;

            last_valid_id = Some(id);
            if DAYS_2021.contains(&day) {
                hires_2021_by_quarter[days[day as usize].quarter] += 1;
                hires_2021_by_department[department as usize - 1] += 1;
            }
            continue;
        }

        let mut kind = Bad::ALL[next_kind % Bad::ALL.len()];
        next_kind += 1;
        if kind == Bad::DuplicateId && last_valid_id.is_none() {
            // Nothing valid to duplicate yet: take the next kind instead.
            kind = Bad::ALL[next_kind % Bad::ALL.len()];
            next_kind += 1;
        }
        bad_by_kind[Bad::ALL.iter().position(|&k| k == kind).expect("kind is in ALL")] += 1;

        let mut fields: Vec<Vec<u8>> = Vec::with_capacity(6);
        let mut field = |push: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = Vec::new();
            push(&mut bytes);
            fields.push(bytes);
        };
        field(&|b| push_number(b, id));
        field(&|b| push_name(b, first, last));
        field(&|b| push_datetime(b, &days[day as usize], second_of_day));
        field(&|b| push_number(b, department.into()));
        field(&|b| push_number(b, job.into()));
        match kind {
            Bad::EmptyId => fields[0].clear(),
            Bad::EmptyName => fields[1].clear(),
            Bad::EmptyDatetime => fields[2].clear(),
            Bad::EmptyDepartmentId => fields[3].clear(),
            Bad::EmptyJobId => fields[4].clear(),
            Bad::BlankName => fields[1] = b"   ".to_vec(),
            Bad::TooFewFields => drop(fields.pop()),
            Bad::TooManyFields => fields.push(fields[4].clone()),
            Bad::IdNotInteger => fields[0] = format!("E{id}").into_bytes(),
            Bad::IdZero => fields[0] = b"0".to_vec(),
            Bad::IdNegative => fields[0] = format!("-{id}").into_bytes(),
            Bad::IdBeyondI32 => fields[0] = (i32::MAX as u64 + id).to_string().into_bytes(),
            Bad::IdFloat => fields[0] = format!("{id}.5").into_bytes(),
            Bad::ImpossibleDatetime => fields[2] = b"2021-13-40T99:00:00Z".to_vec(),
            Bad::NotADatetime => fields[2] = b"yesterday".to_vec(),
            Bad::UnknownDepartment => fields[3] = UNKNOWN_ID.into(),
            Bad::UnknownJob => fields[4] = UNKNOWN_ID.into(),
            Bad::DuplicateId => {
                fields[0].clear();
                push_number(&mut fields[0], last_valid_id.expect("checked above"));
            }
            Bad::InvalidUtf8Name => fields[1] = LATIN1_NAMES[id as usize % LATIN1_NAMES.len()].to_vec(),
            Bad::NameTooLong => {
                // About 2 KiB of hyphenated surnames: twice the 1 KiB limit.
                while fields[1].len() < 2048 {
                    fields[1].push(b'-');
                    fields[1].extend_from_slice(last.as_bytes());
                }
            }
        }
        out.write_all(&fields.join(&b','))?;
        out.write_all(b"\n")?;
    }

    let valid_rows = spec.rows - bad_total;
    let valid_hires_2021: u64 = hires_2021_by_quarter.iter().sum();
    // Above the mean: hired > total / departments, compared without division.
    let mut above: Vec<(u64, u32)> = (1..=DEPARTMENTS.len() as u32)
        .map(|id| (hires_2021_by_department[id as usize - 1], id))
        .filter(|&(hired, _)| hired * DEPARTMENTS.len() as u64 > valid_hires_2021)
        .collect();
    above.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut rejects_by_reason = BTreeMap::new();
    for (kind, &count) in Bad::ALL.iter().zip(&bad_by_kind) {
        if count > 0 {
            *rejects_by_reason.entry(kind.reason()).or_default() += count;
        }
    }
    Ok(Manifest {
        seed: spec.seed,
        bad_fraction: spec.bad,
        departments: DEPARTMENTS.len(),
        jobs: JOBS,
        rows: spec.rows,
        valid_rows,
        bad_rows: bad_total,
        bad_by_kind: Bad::ALL.iter().map(|kind| kind.name()).zip(bad_by_kind).collect(),
        rejects_by_reason,
        valid_hires_2021,
        valid_hires_2021_by_quarter: hires_2021_by_quarter,
        valid_hires_2021_by_department: (1..=DEPARTMENTS.len() as u32).zip(hires_2021_by_department).collect(),
        departments_above_mean_2021: above.into_iter().map(|(_, id)| id).collect(),
    })
}

/// One calendar day: `YYYY-MM-DD` and its quarter (0..=3).
struct Day {
    date: [u8; 10],
    quarter: usize,
}

/// The days from 2020-01-01, for [`DAYS`] days.
fn day_table() -> Vec<Day> {
    let mut days = Vec::with_capacity(DAYS as usize);
    let mut year = FIRST_YEAR;
    while days.len() < DAYS as usize {
        let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for (month, length) in (1..=12u32).zip(lengths) {
            for day in 1..=length {
                let text = format!("{year:04}-{month:02}-{day:02}");
                let date = text.as_bytes().try_into().expect("YYYY-MM-DD is 10 bytes");
                days.push(Day { date, quarter: (month as usize - 1) / 3 });
            }
        }
        year += 1;
    }
    days.truncate(DAYS as usize);
    days
}

fn push_number(line: &mut Vec<u8>, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[start..]);
}

fn push_name(line: &mut Vec<u8>, first: &str, last: &str) {
    line.extend_from_slice(first.as_bytes());
    line.push(b' ');
    line.extend_from_slice(last.as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn push_datetime(line: &mut Vec<u8>, day: &Day, second_of_day: u64) {
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    line.extend_from_slice(&day.date);
    line.push(b'T');
    line.extend_from_slice(&two(hour));
    line.push(b':');
    line.extend_from_slice(&two(minute));
    line.push(b':');
    line.extend_from_slice(&two(second));
    line.push(b'Z');
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn in_memory(rows: u64, bad: f64, seed: u64) -> (Vec<u8>, Manifest) {
        let mut bytes = Vec::new();
        let manifest = write_hires(&Spec::new(rows, bad, seed).unwrap(), &mut bytes).unwrap();
        (bytes, manifest)
    }

    #[test]
    fn the_same_arguments_give_the_same_bytes() {
        let (first, first_manifest) = in_memory(20_000, 0.1, 7);
        let (second, second_manifest) = in_memory(20_000, 0.1, 7);
        assert!(first == second, "two runs with the same seed differ");
        assert_eq!(first_manifest, second_manifest);
        let (other_seed, _) = in_memory(20_000, 0.1, 8);
        assert!(first != other_seed, "a different seed gives the same bytes");
    }

    #[test]
    fn the_output_never_changes_for_a_given_seed() {
        // If this fails, every data set generated before the change is different now.
        let (bytes, _) = in_memory(3, 0.0, 42);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "1,Jamal Sanchez,2021-12-22T12:26:17Z,5,80\n\
             2,Aaron Ramirez,2020-01-14T16:25:10Z,10,154\n\
             3,Omar Suzuki,2022-12-04T12:40:55Z,6,8\n"
        );
        // FNV-1a of a file with every kind of broken row.
        let (bytes, _) = in_memory(10_000, 0.2, 42);
        let hash = bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        assert_eq!(format!("{hash:016x}"), "43fcd49179c92612");
    }

    #[test]
    fn generate_writes_the_same_four_files_every_time() {
        let base = std::env::temp_dir().join(format!("xtask-gen-data-test-{}", std::process::id()));
        let spec = Spec::new(2_000, 0.1, 1).unwrap();
        let first = generate(&spec, &base.join("first")).unwrap();
        let second = generate(&spec, &base.join("second")).unwrap();
        assert_eq!(first, second);
        for name in ["departments.csv", "jobs.csv", "hired_employees.csv", "manifest.json"] {
            let first = std::fs::read(base.join("first").join(name)).unwrap();
            assert!(first == std::fs::read(base.join("second").join(name)).unwrap(), "{name} differs");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(base.join("first").join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["rows"], 2_000);
        assert_eq!(manifest["bad_rows"], 200);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn departments_and_jobs_have_the_announced_sizes() {
        let (mut departments, mut jobs) = (Vec::new(), Vec::new());
        write_departments(&mut departments).unwrap();
        write_jobs(&mut jobs).unwrap();
        let departments = String::from_utf8(departments).unwrap();
        let jobs = String::from_utf8(jobs).unwrap();
        assert_eq!(departments.lines().count(), 12);
        assert_eq!(jobs.lines().count(), 200);
        assert!(departments.starts_with("1,Product Management\n"));
        assert!(jobs.ends_with("200,Systems Administrator IV\n"));
        let names: HashSet<&str> = jobs.lines().map(|l| l.split_once(',').unwrap().1).collect();
        assert_eq!(names.len(), 200, "job names are unique");
    }

    #[test]
    fn valid_rows_do_not_depend_on_the_bad_fraction() {
        let (clean, _) = in_memory(5_000, 0.0, 3);
        let (dirty, manifest) = in_memory(5_000, 0.25, 3);
        let clean: Vec<&[u8]> = clean.split(|&b| b == b'\n').collect();
        let dirty: Vec<&[u8]> = dirty.split(|&b| b == b'\n').collect();
        assert_eq!(clean.len(), dirty.len());
        let same = clean.iter().zip(&dirty).filter(|(a, b)| a == b).count() as u64;
        // The trailing empty piece after the last newline is equal too.
        assert_eq!(same, manifest.valid_rows + 1);
    }

    #[test]
    fn the_manifest_matches_an_independent_check_of_the_rows() {
        for (rows, bad) in [(10_000, 0.0), (10_000, 0.05), (1_000, 1.0), (7, 0.5), (0, 0.5)] {
            let (bytes, manifest) = in_memory(rows, bad, 11);
            let check = check_rows(&bytes);
            assert_eq!(check.rows, rows, "rows for {rows}/{bad}");
            assert_eq!(manifest.bad_rows, (rows as f64 * bad).round() as u64);
            assert_eq!(manifest.valid_rows + manifest.bad_rows, rows);
            assert_eq!(check.valid, manifest.valid_rows, "valid rows for {rows}/{bad}");
            assert_eq!(check.hires_2021, manifest.valid_hires_2021, "2021 hires for {rows}/{bad}");
            assert_eq!(
                check.hires_2021_by_department, manifest.valid_hires_2021_by_department,
                "2021 hires by department for {rows}/{bad}"
            );
            assert_eq!(check.rejects_by_reason, manifest.rejects_by_reason, "reasons for {rows}/{bad}");
            assert_eq!(manifest.bad_by_kind.values().sum::<u64>(), manifest.bad_rows);
        }
    }

    #[test]
    fn every_kind_of_broken_row_appears_evenly() {
        let (_, manifest) = in_memory(100_000, 0.01, 5);
        assert_eq!(manifest.bad_rows, 1_000);
        for (kind, count) in &manifest.bad_by_kind {
            assert_eq!(*count, 50, "{kind}");
        }
    }

    #[test]
    fn the_data_has_the_announced_shape() {
        let (_, manifest) = in_memory(100_000, 0.0, 9);
        let share_2021 = manifest.valid_hires_2021 as f64 / 100_000.0;
        assert!((0.32..0.35).contains(&share_2021), "2021 share {share_2021}");
        let above = manifest.departments_above_mean_2021.len();
        assert!((2..=6).contains(&above), "{above} departments above the mean");
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        assert!(Spec::new(10, 1.5, 1).is_err());
        assert!(Spec::new(10, -0.1, 1).is_err());
        assert!(Spec::new(i32::MAX as u64 + 1, 0.0, 1).is_err());
    }

    /// Counts rows the way the data contract reads them, independently of the generator.
    #[derive(Default)]
    struct Check {
        rows: u64,
        valid: u64,
        hires_2021: u64,
        hires_2021_by_department: BTreeMap<u32, u64>,
        rejects_by_reason: BTreeMap<&'static str, u64>,
    }

    fn check_rows(bytes: &[u8]) -> Check {
        let mut check = Check { hires_2021_by_department: (1..=12).map(|id| (id, 0)).collect(), ..Check::default() };
        let mut seen = HashSet::new();
        let lines = bytes.strip_suffix(b"\n").map(|b| b.split(|&c| c == b'\n'));
        for line in lines.into_iter().flatten() {
            check.rows += 1;
            match check_row(line, &mut seen) {
                Ok((department, year)) => {
                    check.valid += 1;
                    if year == 2021 {
                        check.hires_2021 += 1;
                        *check.hires_2021_by_department.get_mut(&department).unwrap() += 1;
                    }
                }
                Err(reason) => *check.rejects_by_reason.entry(reason).or_default() += 1,
            }
        }
        check
    }

    /// The row's department and hire year, or the reason it is rejected.
    fn check_row(line: &[u8], seen: &mut HashSet<i32>) -> Result<(u32, u32), &'static str> {
        let line = std::str::from_utf8(line).map_err(|_| "invalid_utf8")?;
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            return Err("wrong_field_count");
        }
        if fields.iter().any(|f| f.trim().is_empty()) {
            return Err("missing_field");
        }
        let id = fields[0].parse::<i32>().ok().filter(|&id| id > 0).ok_or("invalid_id")?;
        if fields[1].trim().len() > 1024 {
            return Err("field_too_long");
        }
        let year = check_datetime(fields[2]).ok_or("invalid_datetime")?;
        let department = fields[3].parse::<u32>().map_err(|_| "invalid_id")?;
        let job = fields[4].parse::<u32>().map_err(|_| "invalid_id")?;
        if !(1..=12).contains(&department) {
            return Err("unknown_department");
        }
        if !(1..=200).contains(&job) {
            return Err("unknown_job");
        }
        if !seen.insert(id) {
            return Err("duplicate_id");
        }
        Ok((department, year))
    }

    fn check_datetime(text: &str) -> Option<u32> {
        let b = text.as_bytes();
        let shape = b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':';
        if !shape || b[16] != b':' || b[19] != b'Z' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        let ok = (2020..=2022).contains(&year)
            && (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        ok.then_some(year)
    }
}
