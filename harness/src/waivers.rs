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
    /// Exact outcome field path (`events[0].syndrome`, `end.kind`).
    pub field: String,
    pub reason: String,
    /// Where the behaviour is documented (QEMU issue, api.rst section, commit).
    pub reference: String,
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
    pub fn apply(&self, case: &str, a: &str, b: &str, fields: Vec<FieldDiff>) -> (Vec<FieldDiff>, Vec<(FieldDiff, usize)>) {
        let mut left = Vec::new();
        let mut waived = Vec::new();
        for f in fields {
            let hit = self.waivers.iter().position(|w| {
                w.case == case && w.field == f.field && ((w.backends[0] == a && w.backends[1] == b) || (w.backends[0] == b && w.backends[1] == a))
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
                field: "events[0].far".into(),
                reason: "r".into(),
                reference: "ref".into(),
            }],
        };
        let (left, waived) = w.apply("mmio/x", "model", "kvm", vec![fd("events[0].far"), fd("events[0].pc")]);
        assert_eq!(waived.len(), 1);
        assert_eq!(left, vec![fd("events[0].pc")]);
        let (left, waived) = w.apply("mmio/y", "model", "kvm", vec![fd("events[0].far")]);
        assert!(waived.is_empty() && left.len() == 1);
        let (left, waived) = w.apply("mmio/x", "model", "refhyp", vec![fd("events[0].far")]);
        assert!(waived.is_empty() && left.len() == 1);
    }
}
