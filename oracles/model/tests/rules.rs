//! End-to-end checks of the rules on small hand-written cases: each test states the
//! architectural or policy rule it pins, including the negative side (forms without a valid
//! syndrome, CMOs that must not fault).

use serde_json::{json, Value};
use trapdiff_arch::outcome::{End, Event, Vector};
use trapdiff_arch::{Case, Outcome};
use trapdiff_model::{profile, Model};

const CODE: u64 = 0x4000_0000;
const HOLE: u64 = 0x5000_0000;
const RAM: u64 = 0x6000_0000;

fn case(isa: &str, el: &str, insns: &[(u32, &str)], regs: Value, extra: Value) -> Case {
    let mut v = json!({
        "schema": 1,
        "name": "test/case",
        "family": "misc",
        "state": {"isa": isa, "el": el},
        "memory": [
            {"name": "code", "ipa": format!("{CODE:#x}"), "size": "0x1000", "kind": "ram"},
            {"name": "hole", "ipa": format!("{HOLE:#x}"), "size": "0x1000", "kind": "mmio"},
            {"name": "data", "ipa": format!("{RAM:#x}"), "size": "0x2000", "kind": "ram", "fill": 165},
            {"name": "rom", "ipa": "0x70000000", "size": "0x2000", "kind": "ro_ram", "fill": 90},
            {"name": "dev", "ipa": "0x80000000", "size": "0x1000", "kind": "device", "s2": "device_n_gn_r_e", "s1": {"attr": "normal_wb"}},
            {"name": "s1dev", "ipa": "0x90000000", "size": "0x1000", "kind": "ram", "s1": {"attr": "device_n_gn_r_e"}}
        ],
        "code": {"ipa": format!("{CODE:#x}"), "insns": insns.iter().map(|(w, a)| json!({"w": format!("{w:#x}"), "asm": a})).collect::<Vec<_>>()},
        "regs": regs,
        "observe": {"regs": ["x0", "x1", "x2", "x9"]}
    });
    if isa != "a64" {
        v["observe"]["regs"] = json!(["r0", "r1", "r2", "r9"]);
    }
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, e) in extra {
            obj.insert(k.clone(), e.clone());
        }
    }
    serde_json::from_value(v).expect("test case parses")
}

fn predict(c: &Case) -> Outcome {
    let p = profile("linux-6.1").expect("profile");
    let out = Model::new(p).predict(c);
    assert_eq!(out.meta.backend, "model");
    out
}

fn reg(o: &Outcome, name: &str) -> u128 {
    let r: trapdiff_arch::case::Reg = name.parse().expect("reg");
    o.state.as_ref().and_then(|s| s.regs.get(&r)).map(|v| v.0).unwrap_or_else(|| panic!("no {name} in {o:?}"))
}

fn exception(o: &Outcome, i: usize) -> (Vector, u64, Option<u64>, u64) {
    match &o.events[i] {
        Event::Exception { vector, syndrome, far, pc, .. } => (*vector, *syndrome, *far, *pc),
        e => panic!("event {i} is {e:?}"),
    }
}

#[test]
fn ldr_to_a_hole_is_an_mmio_exit_with_sign_extension() {
    // ldrsh w1, [x0]: ISV=1, SAS=1, SSE=1, SF=0 -> 16 bits sign-extended into W1, X1[63:32] = 0.
    let c = case("a64", "el1", &[(0x79c0_0001, "ldrsh w1, [x0]")], json!({"x0": format!("{HOLE:#x}")}), json!({"vmm": {"reads": ["0x8001"]}}));
    let o = predict(&c);
    assert_eq!(o.events, vec![Event::Mmio { ipa: HOLE, len: 2, write: false, data: 0x8001 }]);
    assert_eq!(o.end, End::Done);
    assert_eq!(reg(&o, "x1"), 0xffff_8001);
}

#[test]
fn store_data_is_the_low_bytes_of_the_register() {
    // strb w1, [x0, #3]
    let c = case("a64", "el1", &[(0x3900_0c01, "strb w1, [x0, #3]")], json!({"x0": format!("{HOLE:#x}"), "x1": "0x1234"}), json!({}));
    assert_eq!(predict(&c).events, vec![Event::Mmio { ipa: HOLE + 3, len: 1, write: true, data: 0x34 }]);
}

#[test]
fn writeback_forms_have_no_syndrome_enosys_without_nisv_to_user() {
    // ldr x1, [x0], #8: post-index writeback -> ISV=0 -> io_mem_abort() returns -ENOSYS.
    let c = case("a64", "el1", &[(0xf840_8401, "ldr x1, [x0], #8")], json!({"x0": format!("{HOLE:#x}")}), json!({}));
    let o = predict(&c);
    assert!(o.events.is_empty());
    assert_eq!(o.end, End::RunError { errno: 38 });
    assert!(o.state.is_none());
}

#[test]
fn nisv_to_user_then_injected_abort_does_not_retire_the_instruction() {
    // ldp x1, x2, [x0]: two registers -> ISV=0 -> KVM_EXIT_ARM_NISV (esr_iss = FSC only for a
    // load), then the VMM injects a synchronous external abort at the LDP itself.
    let c = case(
        "a64",
        "el1",
        &[(0xa940_0801, "ldp x1, x2, [x0]"), (0xd28c_01a9, "mov x9, #0x600d")],
        json!({"x0": format!("{:#x}", HOLE + 0x10), "x1": "0x11"}),
        json!({"vmm": {"nisv_to_user": true}}),
    );
    let o = predict(&c);
    assert_eq!(o.events[0], Event::Nisv { esr_iss: 0x07, ipa: HOLE + 0x10 });
    assert_eq!(exception(&o, 1), (Vector::Sync, 0x9600_0010, Some(HOLE + 0x10), CODE));
    assert_eq!(o.end, End::Done);
    assert_eq!(reg(&o, "x1"), 0x11);
    assert_eq!(reg(&o, "x9"), 0x600d);
}

#[test]
fn exclusives_atomics_and_simd_have_no_syndrome() {
    for (w, asm) in [(0xc85f_7c01u32, "ldxr x1, [x0]"), (0xf821_0002, "ldadd x1, x2, [x0]"), (0x3dc0_0000, "ldr q0, [x0]"), (0x4c40_7000, "ld1 {v0.16b}, [x0]")]
    {
        let c = case("a64", "el1", &[(w, asm)], json!({"x0": format!("{HOLE:#x}")}), json!({"vmm": {"nisv_to_user": true, "on_nisv": "stop"}}));
        let o = predict(&c);
        assert!(matches!(o.events.as_slice(), [Event::Nisv { .. }]), "{asm}: {o:?}");
        assert!(matches!(o.end, End::Stopped { .. }), "{asm}");
    }
}

#[test]
fn ldar_keeps_its_syndrome() {
    // ldar w1, [x0]: AR=1 but still ISV=1 -> an ordinary MMIO exit.
    let c = case("a64", "el1", &[(0x88df_fc01, "ldar w1, [x0]")], json!({"x0": format!("{HOLE:#x}")}), json!({}));
    let o = predict(&c);
    assert!(matches!(o.events.as_slice(), [Event::Mmio { len: 4, write: false, .. }]), "{o:?}");
}

#[test]
fn read_only_memslot_reads_hit_memory_and_writes_exit() {
    // ldr w2, [x0]; str w1, [x0]
    let c = case("a64", "el1", &[(0xb940_0002, "ldr w2, [x0]"), (0xb900_0001, "str w1, [x0]")], json!({"x0": "0x70000000", "x1": "0xcafe"}), json!({}));
    let o = predict(&c);
    assert_eq!(o.events, vec![Event::Mmio { ipa: 0x7000_0000, len: 4, write: true, data: 0xcafe }]);
    assert_eq!(reg(&o, "x2"), 0x5a5a_5a5a);
}

#[test]
fn cmo_to_a_hole_is_skipped() {
    // dc civac, x0 on an IPA with no memslot: kvm_handle_guest_abort() retires it.
    let c = case("a64", "el1", &[(0xd50b_7e20, "dc civac, x0"), (0xd28c_01a9, "mov x9, #0x600d")], json!({"x0": format!("{HOLE:#x}")}), json!({}));
    let o = predict(&c);
    assert!(o.events.is_empty(), "{o:?}");
    assert_eq!(reg(&o, "x9"), 0x600d);
}

#[test]
fn cmo_on_read_only_memslot_untouched_vs_touched() {
    // Untouched page: stage-2 translation fault with CM=1, WnR=1 -> KVM sees a write to a
    // read-only slot without syndrome -> NISV (esr_iss CM|WnR|FSC=translation L3).
    let c = case("a64", "el1", &[(0xd50b_7e20, "dc civac, x0")], json!({"x0": "0x70000000"}), json!({"vmm": {"nisv_to_user": true, "on_nisv": "stop"}}));
    assert_eq!(predict(&c).events, vec![Event::Nisv { esr_iss: 0x147, ipa: 0x7000_0000 }]);
    // Touched by a load first: DC CIVAC needs no stage-2 write permission (no FEAT_CMOW)...
    let c = case(
        "a64",
        "el1",
        &[(0xb940_0002, "ldr w2, [x0]"), (0xd50b_7e20, "dc civac, x0")],
        json!({"x0": "0x70000000"}),
        json!({"vmm": {"nisv_to_user": true, "on_nisv": "stop"}}),
    );
    assert!(predict(&c).events.is_empty());
    // ...but DC IVAC does (ASL AArch64.S2CheckPermission): permission fault L3.
    let c = case(
        "a64",
        "el1",
        &[(0xb940_0002, "ldr w2, [x0]"), (0xd508_7620, "dc ivac, x0")],
        json!({"x0": "0x70000000"}),
        json!({"vmm": {"nisv_to_user": true, "on_nisv": "stop"}}),
    );
    assert_eq!(predict(&c).events, vec![Event::Nisv { esr_iss: 0x14f, ipa: 0x7000_0000 }]);
}

#[test]
fn dc_zva_zeroes_a_block_and_faults_on_device() {
    // dc zva, x0 in RAM: 64 bytes from the aligned-down address become zero.
    let mut c = case("a64", "el1", &[(0xd50b_7420, "dc zva, x0")], json!({"x0": format!("{:#x}", RAM + 0x47)}), json!({}));
    c.observe.mem = vec![trapdiff_arch::case::MemWindow { region: "data".into(), offset: 0x3f, len: 0x42 }];
    let o = predict(&c);
    let mem = &o.state.as_ref().expect("state").memory;
    let w = &mem.iter().find(|m| m.region == "data").expect("data region").windows[0].bytes;
    assert_eq!(w[0], 0xa5);
    assert!(w[1..0x41].iter().all(|b| *b == 0));
    assert_eq!(w[0x41], 0xa5);
    // On stage-1 Device memory it is an alignment fault even when aligned (CM=0, WnR=1).
    let c = case("a64", "el1", &[(0xd50b_7420, "dc zva, x0")], json!({"x0": "0x90000000"}), json!({}));
    let o = predict(&c);
    assert_eq!(exception(&o, 0).1, 0x9600_0061);
}

#[test]
fn unaligned_access_to_stage1_device_faults_at_stage1_and_stage2_device_is_efault() {
    // ldr w1, [x0] at +2 of stage-1 Device memory: alignment fault to the guest.
    let c = case("a64", "el1", &[(0xb940_0001, "ldr w1, [x0]")], json!({"x0": "0x90000002"}), json!({}));
    let o = predict(&c);
    assert_eq!(exception(&o, 0), (Vector::Sync, 0x9600_0021, Some(0x9000_0002), CODE));
    // Aligned: fine.
    let c = case("a64", "el1", &[(0xb940_0001, "ldr w1, [x0]")], json!({"x0": "0x90000004"}), json!({}));
    assert!(predict(&c).events.is_empty());
    // Stage-1 Normal over stage-2 Device, unaligned: a stage-2 alignment fault, which Linux
    // 6.1 does not handle ("Unsupported FSC") -> KVM_RUN fails with EFAULT.
    let c = case("a64", "el1", &[(0xb940_0001, "ldr w1, [x0]")], json!({"x0": "0x80000002"}), json!({}));
    assert_eq!(predict(&c).end, End::RunError { errno: 14 });
}

#[test]
fn a64_fp_trap_from_cpacr() {
    // fadd d0, d1, d2 with CPACR_EL1.FPEN = 0b01 at EL0: EC 0x07.
    let c = case("a64", "el0", &[(0x1e62_2820, "fadd d0, d1, d2")], json!({}), json!({"sysregs": {"cpacr": "0x100000"}}));
    let o = predict(&c);
    let (v, syn, far, pc) = exception(&o, 0);
    assert_eq!((v, syn, far, pc), (Vector::Sync, 0x1e00_0000, None, CODE));
    // The same at EL1 runs.
    let c = case("a64", "el1", &[(0x1e62_2820, "fadd d0, d1, d2")], json!({}), json!({"sysregs": {"cpacr": "0x100000"}}));
    assert!(predict(&c).events.is_empty());
}

#[test]
fn a32_fpexc_en_gates_vfp_but_not_vmrs_fpexc() {
    // vadd.f64 d0, d1, d2 with FPEXC.EN = 0: UNDEFINED; vmrs r0, fpexc still reads it.
    let c = case(
        "a32",
        "el1",
        &[(0xee31_0b02, "vadd.f64 d0, d1, d2"), (0xeef8_0a10, "vmrs r0, fpexc")],
        json!({"r0": "0x1"}),
        json!({"sysregs": {"fpexc": "0x0"}, "observe": {"regs": ["r0"], "fp": true}}),
    );
    let o = predict(&c);
    assert_eq!(o.events.len(), 1);
    assert_eq!(exception(&o, 0), (Vector::Undef, 0, None, CODE));
    assert_eq!(reg(&o, "r0"), 0);
    let fp = o.state.as_ref().and_then(|s| s.fp).expect("fp");
    assert_eq!(fp.fpexc, Some(0));
    assert!(o.unknown.iter().any(|u| u.path == "state.fp.fpexc" && u.mask & (1 << 30) == 0));
}

#[test]
fn a32_ldrd_has_no_syndrome_ldrh_has_one() {
    // ldrd r2, r3, [r1] vs ldrh r2, [r1]
    let c = case("a32", "el1", &[(0xe1c1_20d0, "ldrd r2, r3, [r1]")], json!({"r1": format!("{HOLE:#x}")}), json!({}));
    assert_eq!(predict(&c).end, End::RunError { errno: 38 });
    let c = case("a32", "el1", &[(0xe1d1_20b0, "ldrh r2, [r1]")], json!({"r1": format!("{HOLE:#x}")}), json!({"vmm": {"reads": ["0xbeef"]}}));
    let o = predict(&c);
    assert_eq!(o.events, vec![Event::Mmio { ipa: HOLE, len: 2, write: false, data: 0xbeef }]);
    assert_eq!(reg(&o, "r2"), 0xbeef);
}

#[test]
fn t32_sixteen_bit_load_and_injected_abort_il() {
    // ldr r2, [r1] (16-bit) with on_mmio = inject_abort: an MMIO exit, then an external abort
    // on the same instruction (DFSR long format 0x210), register untouched.
    let c = case("t32", "el1", &[(0x680a, "ldr r2, [r1]")], json!({"r1": format!("{HOLE:#x}"), "r2": "0x77"}), json!({"vmm": {"on_mmio": "inject_abort"}}));
    let o = predict(&c);
    assert!(matches!(o.events[0], Event::Mmio { len: 4, write: false, .. }));
    assert_eq!(exception(&o, 1), (Vector::DataAbort, 0x210, Some(HOLE), CODE));
    assert_eq!(reg(&o, "r2"), 0x77);
    assert!(o.unknown.iter().any(|u| u.path == "events[0].data"));
}

#[test]
fn exception_and_exit_limits() {
    // Three UDFs with max_exceptions = 2: the second record reaches the limit and ends the case.
    let udf = (0x0000_0000u32, "udf #0");
    let c = case("a64", "el1", &[udf, udf, udf], json!({}), json!({"limits": {"max_exceptions": 2}}));
    let o = predict(&c);
    assert_eq!(o.events.len(), 2);
    assert_eq!(o.end, End::ExceptionLimit);
    // Two MMIO reads with max_exits = 1.
    let ld = (0xb940_0001u32, "ldr w1, [x0]");
    let c = case("a64", "el1", &[ld, ld], json!({"x0": format!("{HOLE:#x}")}), json!({"limits": {"max_exits": 1}}));
    let o = predict(&c);
    assert_eq!(o.events.len(), 1);
    assert_eq!(o.end, End::ExitLimit);
}

#[test]
fn s1_read_only_store_is_a_guest_permission_fault() {
    let mut c = case("a64", "el1", &[(0xb900_0001, "str w1, [x0]")], json!({"x0": format!("{RAM:#x}")}), json!({}));
    c.memory[2].s1 = Some(trapdiff_arch::case::S1 { attr: trapdiff_arch::memattr::S1Attr::NormalWb, perm: trapdiff_arch::case::S1Perm::R, el0: None });
    let o = predict(&c);
    // DABT_CUR, IL, WnR, permission fault level 3.
    assert_eq!(exception(&o, 0), (Vector::Sync, 0x9600_004f, Some(RAM), CODE));
}

#[test]
fn profiles_differ_where_they_say() {
    // DC CVAC on an untouched page of a read-only slot: both Linux and the refhyp fill stage 2
    // lazily, so the CMO takes a stage-2 translation fault reported as a write (NISV).
    let c = case("a64", "el1", &[(0xd50b_7a20, "dc cvac, x0")], json!({"x0": "0x70000000"}), json!({"vmm": {"nisv_to_user": true, "on_nisv": "stop"}}));
    let linux = Model::new(profile("linux-6.1").expect("p")).predict(&c);
    let reference = Model::new(profile("reference").expect("p")).predict(&c);
    assert_eq!(linux.events, vec![Event::Nisv { esr_iss: 0x147, ipa: 0x7000_0000 }]);
    assert_eq!(reference.events, linux.events);
    assert_eq!(reference.meta.policy.as_deref(), Some("reference"));
    // Where they differ: HVC with an unallocated function ID; Linux's PSCI code zeroes x1..x3,
    // the refhyp (no PSCI) writes x0 only.
    let c = case("a64", "el1", &[(0xd400_0002, "hvc #0")], json!({"x1": "0x77"}), json!({}));
    let (l, r) = (Model::new(profile("linux-6.1").expect("p")).predict(&c), Model::new(profile("reference").expect("p")).predict(&c));
    assert_eq!((reg(&l, "x1"), reg(&r, "x1")), (0, 0x77));
}

#[test]
fn brk_wfi_wfe_hvc_smc() {
    // brk #1: EC 0x3C, ISS = imm16, taken at the BRK itself.
    let c = case("a64", "el1", &[(0xd420_0020, "brk #1")], json!({}), json!({}));
    assert_eq!(exception(&predict(&c), 0), (Vector::Sync, 0xf200_0001, None, CODE));
    // wfi at EL1 blocks until an interrupt no case enables: the watchdog ends the case.
    let c = case("a64", "el1", &[(0xd503_207f, "wfi")], json!({}), json!({}));
    assert_eq!(predict(&c).end, End::Timeout);
    // wfe at EL0 traps to EL1 (SCTLR_EL1.nTWE = 0): EC 0x01, CV, COND 0xE, TI = 1.
    let c = case("a64", "el0", &[(0xd503_205f, "wfe")], json!({}), json!({}));
    assert_eq!(exception(&predict(&c), 0).1, 0x07e0_0001);
    // hvc #0 with an unallocated function ID: SMCCC_RET_NOT_SUPPORTED in x0, x1..x3 zeroed
    // (Linux); the refhyp leaves x1 alone.
    let c = case("a64", "el1", &[(0xd400_0002, "hvc #0")], json!({"x0": "0x12345", "x1": "0x77"}), json!({}));
    let o = predict(&c);
    assert_eq!((reg(&o, "x0"), reg(&o, "x1")), (u128::from(u64::MAX), 0));
    let o = Model::new(profile("reference").expect("p")).predict(&c);
    assert_eq!((reg(&o, "x0"), reg(&o, "x1")), (u128::from(u64::MAX), 0x77));
    // smc #0: trapped by HCR_EL2.TSC, NOT_SUPPORTED, PC advanced.
    let c = case("a64", "el1", &[(0xd400_0003, "smc #0"), (0xd28c_01a9, "mov x9, #0x600d")], json!({}), json!({}));
    let o = predict(&c);
    assert!(o.events.is_empty());
    assert_eq!((reg(&o, "x0"), reg(&o, "x9")), (u128::from(u64::MAX), 0x600d));
}
