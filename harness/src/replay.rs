//! `trapdiff replay`: one case's outcomes side by side, for reproducing a regression.

use std::fmt::Write;

use trapdiff_arch::outcome::{End, Outcome};

use crate::diff::describe_event;
use crate::run::RunResult;

fn lines(o: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = o.events.iter().enumerate().map(|(i, e)| format!("{i}: {}", describe_event(e))).collect();
    v.push(match &o.end {
        End::Done => "end: done".into(),
        other => format!("end: {other:?}"),
    });
    if let Some(s) = &o.state {
        for (r, val) in &s.regs {
            v.push(format!("{r} = {:#x}", val.0));
        }
        if let Some(fp) = &s.fp {
            v.push(format!("fpexc={:?} fpscr={:#x} fpsr={:#x} cpacr={:#x}", fp.fpexc, fp.fpscr, fp.fpsr, fp.cpacr));
        }
        for m in &s.memory {
            v.push(format!("{}: digest {:#018x}", m.region, m.digest));
            for w in &m.windows {
                v.push(format!("  +{:#x}: {}", w.offset, trapdiff_arch::hex::encode(&w.bytes)));
            }
        }
    }
    v
}

pub fn side_by_side(r: &RunResult) -> String {
    let mut s = String::new();
    for c in &r.cases {
        for (b, o) in &c.outcomes {
            let _ = writeln!(s, "\n== {b} ({})", o.meta.kernel.clone().or(o.meta.policy.clone()).unwrap_or_default());
            for l in lines(o) {
                let _ = writeln!(s, "   {l}");
            }
        }
        let _ = writeln!(s, "\nverdict: {:?}", c.verdict);
        for d in &c.divergences {
            let _ = writeln!(s, "  {} vs {} ({:?}): {}", d.left, d.right, d.layer, d.explanation);
            for f in &d.fields {
                let _ = writeln!(s, "    {}: {} | {}", f.field, f.left, f.right);
            }
        }
    }
    s
}
