//! Outcome signatures: the coarse shape of what happened (event kinds, EC and ISS classes,
//! fault status codes, exit kinds, errno, how the case ended), which the novelty feedback
//! steers by, and divergence signatures, which deduplicate finds and which minimisation must
//! keep.

use std::collections::BTreeSet;

use trapdiff_arch::esr::{DataAbortIss, Ec, Esr};
use trapdiff_arch::outcome::{End, Event, Vector};
use trapdiff_arch::{Case, Outcome};

use crate::diff::Divergence;
use crate::known::KnownList;
use crate::run;

use trapdiff_arch::crc32::fnv1a64;

/// The class of one event: for a synchronous exception its EC, and for aborts the ISS bits
/// that say what kind of abort it was (ISV, DFSC, WnR, CM; with ISV the access size, sign
/// extension, width and acquire/release: Arm ARM D17.2.37 "ISS encoding for an exception
/// from a Data Abort"); for exits their direction and length.
pub fn event_class(e: &Event) -> String {
    match e {
        Event::Exception { vector, from_el0, syndrome, .. } => {
            let el = if *from_el0 { "el0" } else { "el1" };
            if *vector != Vector::Sync {
                // AArch32 vectors: the LPAE-format FSR's status and WnR/CM bits.
                return format!("exc:{vector:?}:{el}:fs{:#x}:wnr{}:cm{}", syndrome & 0x3f, (syndrome >> 11) & 1, (syndrome >> 13) & 1);
            }
            let esr = Esr(*syndrome);
            let ec = esr.ec();
            if let Some(da) = esr.data_abort() {
                let mut s =
                    format!("exc:{el}:ec{:#04x}:dfsc{:#04x}:wnr{}:cm{}:isv{}", ec.0, da.dfsc().0, u8::from(da.wnr()), u8::from(da.cm()), u8::from(da.isv()));
                if da.isv() {
                    let iss = da.0;
                    s += &format!(
                        ":sas{}:sse{}:sf{}:ar{}",
                        da.sas(),
                        u8::from(iss & DataAbortIss::SSE != 0),
                        u8::from(iss & DataAbortIss::SF != 0),
                        u8::from(iss & DataAbortIss::AR != 0)
                    );
                }
                s
            } else if ec == Ec::IABT_LOW || ec == Ec::IABT_CUR {
                format!("exc:{el}:ec{:#04x}:ifsc{:#04x}", ec.0, esr.iss() & 0x3f)
            } else {
                format!("exc:{el}:ec{:#04x}", ec.0)
            }
        }
        Event::Mmio { len, write, .. } => format!("mmio:{}{len}", if *write { "w" } else { "r" }),
        // esr_iss carries the data abort ISS (api.rst 5 "KVM_EXIT_ARM_NISV").
        Event::Nisv { esr_iss, .. } => format!("nisv:dfsc{:#04x}:wnr{}:cm{}", esr_iss & 0x3f, (esr_iss >> 6) & 1, (esr_iss >> 8) & 1),
    }
}

/// How a case ended, without free text (errno kept: ENOSYS vs EFAULT matters).
pub fn end_class(e: &End) -> String {
    match e {
        End::Done => "done".into(),
        End::EndOnException => "end-on-exception".into(),
        End::ExceptionLimit => "exception-limit".into(),
        End::ExitLimit => "exit-limit".into(),
        End::Timeout => "timeout".into(),
        End::RunError { errno } => format!("errno{errno}"),
        End::Stopped { .. } => "stopped".into(),
        End::Skipped { .. } => "skipped".into(),
        End::BackendError { .. } => "backend-error".into(),
    }
}

/// The features of one backend's outcome the novelty feedback counts, like edges in a
/// coverage map: each event class, each pair of consecutive classes, the end, and the last
/// event with the end. (Whole sequences would make nearly every case new and drown the
/// corpus.)
pub fn features(backend: &str, o: &Outcome) -> Vec<String> {
    let classes: Vec<String> = o.events.iter().map(event_class).collect();
    let end = end_class(&o.end);
    let mut f: Vec<String> = classes.iter().map(|c| format!("{backend}|{c}")).collect();
    f.extend(classes.windows(2).map(|w| format!("{backend}|{}>{}", w[0], w[1])));
    f.push(format!("{backend}|end:{end}"));
    f.push(format!("{backend}|{}>end:{end}", classes.last().map(String::as_str).unwrap_or("none")));
    f
}

/// What an objective is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindKind {
    /// Backends disagree (including one timing out where another does not).
    Divergence,
    /// A backend failed on the case (the model panicked, QEMU died, the channel broke).
    BackendCrash,
}

/// A deduplicated objective.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Find {
    pub kind: FindKind,
    /// Stable, file-name-safe: `<kind>-<left>-<right>-<class>-<hash>`.
    pub signature: String,
    /// The human-readable key the signature hashes.
    pub key: String,
    pub divergences: Vec<Divergence>,
}

fn generalise(path: &str) -> String {
    // events[3].syndrome -> events[].syndrome: the same difference at another index is the
    // same divergence (minimisation shifts indices).
    let mut out = String::new();
    let mut in_idx = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_idx = true;
                out.push('[');
            }
            ']' => {
                in_idx = false;
                out.push(']');
            }
            _ if in_idx => {}
            _ => out.push(c),
        }
    }
    out
}

/// The class of a divergence between two outcomes: the first differing event's classes on
/// each side, else both ends, else the first differing field.
fn divergence_key(a: &Outcome, b: &Outcome, d: &Divergence) -> String {
    for i in 0..a.events.len().max(b.events.len()) {
        let (x, y) = (a.events.get(i), b.events.get(i));
        if x == y {
            continue;
        }
        let cx = x.map(event_class).unwrap_or_else(|| "none".into());
        let cy = y.map(event_class).unwrap_or_else(|| "none".into());
        if cx != cy {
            return format!("event:{cx}|{cy}");
        }
        // Same class, different values: name the differing fields of that event.
        let fields: BTreeSet<String> = d.fields.iter().filter(|f| f.field.starts_with(&format!("events[{i}]"))).map(|f| generalise(&f.field)).collect();
        return format!("event:{cx}:{}", fields.into_iter().collect::<Vec<_>>().join(","));
    }
    let (ea, eb) = (end_class(&a.end), end_class(&b.end));
    if ea != eb {
        return format!("end:{ea}|{eb}");
    }
    d.fields.first().map(|f| format!("field:{}", generalise(&f.field))).unwrap_or_else(|| "none".into())
}

fn short_class(key: &str) -> String {
    let s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut s: String = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    s.truncate(48);
    s
}

/// The objective this execution is, if any: a backend crash, or a divergence between two
/// backends that both ran the case (ignoring the model's UNKNOWN bits, as `trapdiff run`
/// does). `None` when every backend agrees.
pub fn find(case: &Case, outcomes: &[(String, Outcome)], known: &KnownList) -> Option<Find> {
    if let Some((name, o)) = outcomes.iter().find(|(_, o)| matches!(o.end, End::BackendError { .. })) {
        let msg = match &o.end {
            End::BackendError { message } => message.chars().filter(|c| !c.is_ascii_digit()).take(80).collect::<String>(),
            _ => String::new(),
        };
        let key = format!("crash:{name}:{msg}");
        return Some(Find { kind: FindKind::BackendCrash, signature: format!("crash-{name}-{:016x}", fnv1a64(key.as_bytes())), key, divergences: Vec::new() });
    }
    // What a run would judge: divergences a waiver or known issue covers are not finds.
    let ordered: Vec<(&str, &Outcome)> = outcomes.iter().map(|(n, o)| (n.as_str(), o)).collect();
    let (divergences, _) = run::diff_pairs(case, &ordered, known, &mut vec![false; known.entries.len()]);
    let side = |name: &str| outcomes.iter().find(|(n, _)| n == name).map(|(_, o)| o);
    let keys: Vec<String> =
        divergences.iter().filter_map(|d| Some(format!("{}~{}:{}", d.left, d.right, divergence_key(side(&d.left)?, side(&d.right)?, d)))).collect();
    let first = divergences.first()?;
    let key = keys.join(";");
    let signature = format!(
        "{}-{}-{}-{:016x}",
        first.left,
        first.right,
        short_class(keys.first().and_then(|k| k.split_once(':')).map(|x| x.1).unwrap_or("")),
        fnv1a64(key.as_bytes())
    );
    Some(Find { kind: FindKind::Divergence, signature, key, divergences })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;

    fn dabt(dfsc: u64, wnr: bool) -> Event {
        let iss = dfsc | if wnr { 1 << 6 } else { 0 };
        Event::Exception {
            vector: Vector::Sync,
            from_el0: false,
            syndrome: (0x25 << 26) | (1 << 25) | iss,
            far: Some(0x5000_0000),
            pc: 0x4010_0000,
            bad_spsr: None,
        }
    }

    #[test]
    fn classes_separate_what_matters() {
        assert_ne!(event_class(&dabt(0x21, false)), event_class(&dabt(0x21, true)));
        assert_ne!(event_class(&dabt(0x21, false)), event_class(&dabt(0x10, false)));
        // The FAR and PC are values, not classes.
        let mut e = dabt(0x21, false);
        if let Event::Exception { far, pc, .. } = &mut e {
            *far = Some(1);
            *pc = 2;
        }
        assert_eq!(event_class(&e), event_class(&dabt(0x21, false)));
        assert_eq!(event_class(&Event::Mmio { ipa: 1, len: 4, write: true, data: 9 }), "mmio:w4");
    }

    fn case() -> Case {
        super::super::input::builtin_seeds().into_iter().next().expect("a builtin seed")
    }

    fn find(outcomes: &[(String, Outcome)]) -> Option<Find> {
        super::find(&case(), outcomes, &KnownList::default())
    }

    #[test]
    fn a_divergence_the_known_list_covers_is_no_find() {
        let c = case();
        let a = Outcome { events: vec![Event::Mmio { ipa: 0x5000_0000, len: 4, write: false, data: 1 }], ..Outcome::default() };
        let mut b = Outcome { events: vec![dabt(0x10, false)], ..Outcome::default() };
        b.meta.qemu = Some("10.0.2".into());
        let waiver = |isa: &str| {
            let k: crate::known::Known = serde_json::from_str(&format!(
                r#"{{"id": "w", "class": {{"isa": ["{isa}"]}}, "backends": [["model", "refhyp"]], "fields": ["events*"], "only_under_qemu": true, "reason": "r", "reference": "x"}}"#
            ))
            .unwrap();
            let mut l = KnownList::default();
            l.push(crate::known::Kind::Waiver, k).unwrap();
            l
        };
        let isa = serde_json::to_value(c.state.isa).unwrap();
        let isa = isa.as_str().unwrap();
        let outs = [("model".to_string(), a.clone()), ("refhyp".to_string(), b.clone())];
        assert!(super::find(&c, &outs, &waiver(isa)).is_none(), "a waived class is not an objective");
        let other = if isa == "a64" { "a32" } else { "a64" };
        assert!(super::find(&c, &outs, &waiver(other)).is_some(), "a waiver of another class covers nothing");
        // On silicon the TCG waiver does not apply.
        b.meta.qemu = Some("native".into());
        let outs = [("model".to_string(), a), ("refhyp".to_string(), b)];
        assert!(super::find(&c, &outs, &waiver(isa)).is_some());
    }

    #[test]
    fn agreeing_backends_are_no_find_and_a_difference_is() {
        let a = Outcome { events: vec![Event::Mmio { ipa: 0x5000_0000, len: 4, write: false, data: 1 }], ..Outcome::default() };
        assert!(find(&[("model".into(), a.clone()), ("refhyp".into(), a.clone())]).is_none());
        let b = Outcome { events: vec![dabt(0x10, false)], ..Outcome::default() };
        let f = find(&[("model".into(), a.clone()), ("refhyp".into(), b.clone())]).expect("a divergence");
        assert_eq!(f.kind, FindKind::Divergence);
        assert!(f.signature.starts_with("model-refhyp-event-mmio-r4"), "{}", f.signature);
        // The same divergence at another event index has the same signature.
        let pre = Event::Mmio { ipa: 0x5000_1000, len: 1, write: true, data: 0 };
        let a2 = Outcome { events: vec![pre.clone(), a.events[0].clone()], ..Outcome::default() };
        let b2 = Outcome { events: vec![pre, b.events[0].clone()], ..Outcome::default() };
        let f2 = find(&[("model".into(), a2), ("refhyp".into(), b2)]).expect("a divergence");
        assert_eq!(f.signature, f2.signature);
        // A crash is its own kind of find.
        let c = Outcome { end: End::BackendError { message: "QEMU died (pid 1234)".into() }, ..Outcome::default() };
        assert_eq!(find(&[("model".into(), a), ("refhyp".into(), c)]).map(|f| f.kind), Some(FindKind::BackendCrash));
    }
}
