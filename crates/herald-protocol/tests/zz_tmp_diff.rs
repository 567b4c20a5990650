//! TEMPORARY differential check (not to be committed).
fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}
#[test]
fn diff() {
    let text = std::fs::read_to_string("/tmp/fossilref/diff.jsonl").expect("file");
    let (mut n, mut floor_eq, mut ceil_eq) = (0, 0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let s = hex(v["s"].as_str().expect("s"));
        let t = hex(v["t"].as_str().expect("t"));
        let d = herald_protocol::fossil::delta(&s, &t);
        n += 1;
        if d == hex(v["floor"].as_str().expect("f")) {
            floor_eq += 1
        } else {
            eprintln!("floor mismatch len {} {}", s.len(), t.len());
        }
        if d == hex(v["ceil"].as_str().expect("c")) {
            ceil_eq += 1
        }
    }
    eprintln!("n={n} floor_eq={floor_eq} ceil_eq={ceil_eq}");
    assert_eq!(n, floor_eq);
}
