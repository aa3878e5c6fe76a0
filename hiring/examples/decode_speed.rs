//! Times the decoder alone on a file: `cargo run --release -p hiring --example decode_speed -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("a CSV file of hires");
    let started = std::time::Instant::now();
    let mut decoder =
        hiring::decode::Decoder::new(hiring::table::Table::HiredEmployees, std::fs::File::open(path).unwrap());
    let (mut ok, mut bad) = (0, 0);
    while let Some(d) = decoder.next_record().unwrap() {
        if d.outcome.is_ok() { ok += 1 } else { bad += 1 }
    }
    println!("{ok} ok, {bad} bad in {:?}", started.elapsed());
}
