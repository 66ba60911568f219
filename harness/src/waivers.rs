//! Known-divergence waivers (`corpus/waivers.json`): accepted divergences, each with a reason
//! and a reference, matched on the exact case, backend pair and field. A waiver removes only
//! the field it names; any other differing field still diverges. Unused waivers are reported.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diff::FieldDiff;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// Exact case name.
    pub case: String,
    /// The two backends (order does not matter).
    pub backends: [String; 2],
    /// Exact outcome field paths (`events[0].syndrome`, `end.kind`); each is matched exactly.
    pub fields: Vec<String>,
    pub reason: String,
    /// Where the behaviour is documented (QEMU issue, api.rst section, commit).
    pub reference: String,
    /// Applies only when the live backends ran under QEMU TCG (a TCG limitation must not
    /// hide a divergence on real silicon).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_under_qemu: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaiverFile {
    pub waivers: Vec<Waiver>,
}

impl WaiverFile {
    /// Load; a missing file is an empty list, a malformed one an error naming the place.
    pub fn load(path: &Path) -> Result<WaiverFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WaiverFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Split `fields` into (still diverging, waived with the index of the waiver).
    pub fn apply(&self, case: &str, a: &str, b: &str, under_qemu: bool, fields: Vec<FieldDiff>) -> (Vec<FieldDiff>, Vec<(FieldDiff, usize)>) {
        let mut left = Vec::new();
        let mut waived = Vec::new();
        for f in fields {
            let hit = self.waivers.iter().position(|w| {
                (under_qemu || !w.only_under_qemu)
                    && w.case == case
                    && w.fields.contains(&f.field)
                    && ((w.backends[0] == a && w.backends[1] == b) || (w.backends[0] == b && w.backends[1] == a))
            });
            match hit {
                Some(i) => waived.push((f, i)),
                None => left.push(f),
            }
        }
        (left, waived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(field: &str) -> FieldDiff {
        FieldDiff { field: field.into(), left: "1".into(), right: "2".into() }
    }

    #[test]
    fn a_waiver_hides_only_its_own_field_case_and_pair() {
        let w = WaiverFile {
            waivers: vec![Waiver {
                case: "mmio/x".into(),
                backends: ["kvm".into(), "model".into()],
                fields: vec!["events[0].far".into()],
                reason: "r".into(),
                reference: "ref".into(),
                only_under_qemu: true,
            }],
        };
        let (left, waived) = w.apply("mmio/x", "model", "kvm", true, vec![fd("events[0].far"), fd("events[0].pc")]);
        assert_eq!(waived.len(), 1);
        assert_eq!(left, vec![fd("events[0].pc")]);
        let (left, waived) = w.apply("mmio/y", "model", "kvm", true, vec![fd("events[0].far")]);
        assert!(waived.is_empty() && left.len() == 1);
        let (left, waived) = w.apply("mmio/x", "model", "refhyp", true, vec![fd("events[0].far")]);
        assert!(waived.is_empty() && left.len() == 1);
        // A TCG-only waiver does not apply on silicon.
        let (left, waived) = w.apply("mmio/x", "model", "kvm", false, vec![fd("events[0].far")]);
        assert!(waived.is_empty() && left.len() == 1);
    }
}
