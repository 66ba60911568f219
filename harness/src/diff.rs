//! The diff engine: compare two backends' outcomes for a case field by field, ignoring
//! exactly the bits the model marks UNKNOWN/IMPLEMENTATION DEFINED, and explain each
//! divergence in one line a kernel developer understands.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use trapdiff_arch::esr::{Ec, Esr};
use trapdiff_arch::outcome::{Event, Unknown};
use trapdiff_arch::Outcome;

/// Which layer of the model a divergence implicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// What the CPU did: syndromes, fault addresses, register and memory results.
    Architecture,
    /// What the hypervisor chose to do with a trap: MMIO vs NISV vs errno, injected aborts.
    Policy,
}

/// One field on which two backends disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// Path in the outcome, as `Unknown::path` spells it (`events[0].syndrome`, `end.kind`).
    pub field: String,
    pub left: String,
    pub right: String,
}

/// A divergence between two backends on one case.
#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    pub left: String,
    pub right: String,
    pub layer: Layer,
    /// One line for people.
    pub explanation: String,
    pub fields: Vec<FieldDiff>,
    /// Known issues (ids) this divergence is: back on a kernel at or past their fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regression_of: Vec<String>,
}

/// Flatten an outcome (without `meta` and `unknown`) into path -> scalar.
fn flatten(o: &Outcome) -> BTreeMap<String, Value> {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("meta");
        m.remove("unknown");
    }
    let mut out = BTreeMap::new();
    walk(&v, String::new(), &mut out);
    // Why a case stopped or was skipped is free text each backend words its own way; the
    // kind of end (and the errno of a KVM_RUN error) is what is compared.
    out.remove("end.reason");
    out.remove("end.message");
    out
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(x, p, out);
            }
        }
        Value::Array(a) => {
            // Arrays of bytes-as-hex are scalars already; arrays here are event/region lists.
            out.insert(format!("{path}.len"), Value::from(a.len()));
            for (i, x) in a.iter().enumerate() {
                walk(x, format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

fn parse_hex(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn masked_equal(a: &Value, b: &Value, mask: u64) -> bool {
    match (parse_hex(a), parse_hex(b)) {
        (Some(x), Some(y)) => x & !mask == y & !mask,
        _ => mask == u64::MAX,
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

/// Field differences between `a` and `b`, ignoring the `unknown` bits (from the model).
pub fn compare(a: &Outcome, b: &Outcome, unknown: &[Unknown]) -> Vec<FieldDiff> {
    let fa = flatten(a);
    let fb = flatten(b);
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut diffs = Vec::new();
    for k in keys {
        let (x, y) = (fa.get(k), fb.get(k));
        if x == y {
            continue;
        }
        // An exact path masks its bits; a wholly unknown path also covers everything under it
        // (`events` covers `events.len` and `events[2].pc`).
        let covers = |u: &Unknown| &u.path == k || (u.mask == u64::MAX && (k.starts_with(&format!("{}.", u.path)) || k.starts_with(&format!("{}[", u.path))));
        let mask: u64 = unknown.iter().filter(|u| covers(u)).fold(0, |m, u| m | u.mask);
        if mask != 0 {
            if let (Some(x), Some(y)) = (x, y) {
                if masked_equal(x, y, mask) {
                    continue;
                }
            }
            // A field wholly UNKNOWN may also be present on one side only (e.g. FAR).
            if mask == u64::MAX {
                continue;
            }
        }
        diffs.push(FieldDiff { field: k.clone(), left: show(x), right: show(y) });
    }
    diffs
}

/// One-line description of an event, with the EC and fault status decoded.
pub fn describe_event(e: &Event) -> String {
    match e {
        Event::Exception { vector, from_el0, syndrome, far, pc, bad_spsr } => {
            let from = if *from_el0 { "EL0" } else { "EL1" };
            let far = far.map(|f| format!(" FAR={f:#x}")).unwrap_or_default();
            let esr = Esr(*syndrome);
            let detail = if matches!(vector, trapdiff_arch::outcome::Vector::Sync) {
                let ec = esr.ec();
                let mut d = format!("EC={:#04x} {}", ec.0, ec.name());
                if let Some(da) = esr.data_abort() {
                    d += &format!(
                        " ISV={} DFSC={:#04x}{}{}",
                        u8::from(da.isv()),
                        da.dfsc().0,
                        if da.wnr() { " WnR" } else { "" },
                        if da.cm() { " CM" } else { "" }
                    );
                } else if ec == Ec::IABT_LOW || ec == Ec::IABT_CUR {
                    d += &format!(" IFSC={:#04x}", esr.iss() & 0x3f);
                }
                d
            } else {
                format!("FSR={syndrome:#x}")
            };
            let spsr = bad_spsr.map(|s| format!(", SPSR read {s:#x} (no valid mode)")).unwrap_or_default();
            format!("{vector:?} exception from {from} at pc={pc:#x}: {detail}{far}{spsr}")
        }
        Event::Mmio { ipa, len, write, data } => {
            format!("MMIO {} of {len} bytes at {ipa:#x} (data {data:#x})", if *write { "write" } else { "read" })
        }
        Event::Nisv { esr_iss, ipa } => format!("NISV exit at IPA {ipa:#x} (esr_iss {esr_iss:#x})"),
    }
}

fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::Exception { .. } => "exception",
        Event::Mmio { .. } => "mmio",
        Event::Nisv { .. } => "nisv",
    }
}

/// Classify and explain a set of field differences between `left` and `right` outcomes.
pub fn explain(ln: &str, a: &Outcome, rn: &str, b: &Outcome, fields: Vec<FieldDiff>) -> Divergence {
    let mut layer = Layer::Architecture;
    let mut explanation = String::new();
    // The first differing event says the most.
    let n = a.events.len().max(b.events.len());
    for i in 0..n {
        let (x, y) = (a.events.get(i), b.events.get(i));
        // Skip events equal once the model's UNKNOWN bits are ignored.
        let prefix = format!("events[{i}]");
        if x == y || !fields.iter().any(|f| f.field.starts_with(&prefix)) {
            continue;
        }
        let dx = x.map(describe_event).unwrap_or_else(|| "nothing".into());
        let dy = y.map(describe_event).unwrap_or_else(|| "nothing".into());
        let kinds_differ = x.map(event_kind) != y.map(event_kind);
        // A VMM-visible exit on one side and not the other, or a different exit, is a policy
        // choice; a different exception syndrome or address is the architecture.
        let involves_exit = [x, y].iter().flatten().any(|e| !matches!(e, Event::Exception { .. }));
        if kinds_differ || involves_exit {
            layer = Layer::Policy;
        }
        explanation = if dx == dy {
            // Same summary: the difference is in bits the summary does not decode.
            let f: Vec<String> = fields
                .iter()
                .filter(|f| f.field.starts_with(&format!("events[{i}]")))
                .map(|f| format!("{} {ln}={} {rn}={}", f.field, f.left, f.right))
                .collect();
            format!("event {i} ({dx}) differs in {}", f.join(", "))
        } else {
            format!("event {i}: {ln} saw {dx}; {rn} saw {dy}")
        };
        break;
    }
    if explanation.is_empty() && a.end != b.end {
        layer = Layer::Policy;
        explanation = format!("the case ended differently: {ln} {:?}, {rn} {:?}", a.end, b.end);
    }
    if explanation.is_empty() {
        if let Some(f) = fields.first() {
            explanation = format!("{}: {ln} has {}, {rn} has {}", f.field, f.left, f.right);
            if fields.len() > 1 {
                explanation += &format!(" (+{} more fields)", fields.len() - 1);
            }
        }
    }
    Divergence { left: ln.to_string(), right: rn.to_string(), layer, explanation, fields, regression_of: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trapdiff_arch::outcome::{End, Vector};

    fn exc(syndrome: u64, far: Option<u64>) -> Event {
        Event::Exception { vector: Vector::Sync, from_el0: false, syndrome, far, pc: 0x4000_0000, bad_spsr: None }
    }

    #[test]
    fn identical_outcomes_do_not_diverge() {
        let o = Outcome { events: vec![exc(0x9600_0021, Some(0x1001))], ..Outcome::default() };
        assert!(compare(&o, &o.clone(), &[]).is_empty());
    }

    #[test]
    fn unknown_bits_are_ignored_and_nothing_else() {
        let a = Outcome { events: vec![exc(0x9600_0021, Some(0x1001))], ..Outcome::default() };
        let b = Outcome { events: vec![exc(0x9600_0021, Some(0x1fff))], ..Outcome::default() };
        let far_unknown = [Unknown { path: "events[0].far".into(), mask: 0xfff, why: "test".into() }];
        assert!(compare(&a, &b, &far_unknown).is_empty());
        // The same mask on another field hides nothing here.
        let other = [Unknown { path: "events[0].pc".into(), mask: 0xfff, why: "test".into() }];
        let d = compare(&a, &b, &other);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "events[0].far");
        // Bits outside the mask still count.
        let c = Outcome { events: vec![exc(0x9600_0021, Some(0x2001))], ..Outcome::default() };
        assert_eq!(compare(&a, &c, &far_unknown).len(), 1);
    }

    #[test]
    fn exit_versus_exception_is_a_policy_divergence() {
        let a = Outcome { events: vec![Event::Mmio { ipa: 0x5000_0000, len: 4, write: false, data: 0x11 }], ..Outcome::default() };
        let b = Outcome { events: vec![exc(0x9200_0010, Some(0x5000_0000))], ..Outcome::default() };
        let f = compare(&a, &b, &[]);
        let d = explain("model", &a, "kvm", &b, f);
        assert_eq!(d.layer, Layer::Policy);
        assert!(d.explanation.contains("MMIO read of 4 bytes at 0x50000000"), "{}", d.explanation);
        assert!(d.explanation.contains("DABT"), "{}", d.explanation);
    }

    #[test]
    fn a_wholly_unknown_path_covers_its_subtree_only() {
        let a = Outcome { events: vec![exc(0x9600_0021, Some(0x1001))], ..Outcome::default() };
        let b = Outcome { events: vec![], end: End::Timeout, ..Outcome::default() };
        let all_events = [Unknown { path: "events".into(), mask: u64::MAX, why: "test".into() }];
        let d = compare(&a, &b, &all_events);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].field, "end.kind");
        // A partial mask on a parent path does not spread to its children.
        let partial = [Unknown { path: "events".into(), mask: 0xff, why: "test".into() }];
        assert!(compare(&a, &b, &partial).len() > 1);
    }

    #[test]
    fn stop_reasons_are_free_text_not_compared() {
        let a = Outcome { end: End::Stopped { reason: "VMM stopped on a NISV exit".into() }, ..Outcome::default() };
        let b = Outcome { end: End::Stopped { reason: "KVM_EXIT_ARM_NISV: on_nisv stop".into() }, ..Outcome::default() };
        assert!(compare(&a, &b, &[]).is_empty());
        let c = Outcome { end: End::Timeout, ..Outcome::default() };
        assert_eq!(compare(&a, &c, &[])[0].field, "end.kind");
    }

    #[test]
    fn different_ends_are_reported() {
        let a = Outcome::default();
        let b = Outcome { end: End::RunError { errno: 38 }, ..Outcome::default() };
        let f = compare(&a, &b, &[]);
        assert!(f.iter().any(|f| f.field == "end.kind"));
        let d = explain("model", &a, "kvm", &b, f);
        assert!(d.explanation.contains("RunError"));
    }
}
