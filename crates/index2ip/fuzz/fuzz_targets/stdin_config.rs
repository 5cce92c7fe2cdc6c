//! Any stdin, under every verb: the plugin answers with a result, nothing (quiet success), or a CNI error object on
//! stdout with a non-zero exit. Never a panic, never an empty stdout on failure, never a failure that exits 0.
#![no_main]

use std::process::ExitCode;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    for verb in ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] {
        let env = cni::Env::from_vars([
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", "fuzz"),
            ("CNI_NETNS", "/var/run/netns/fuzz"),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", "K8S_POD_NAME=ndt-index2-fuzz"),
        ]);
        let mut out = Vec::new();
        let code = cni::plugin::run(&index2ip::Index2ip, env, data, &mut out);
        if code == ExitCode::SUCCESS {
            if !out.is_empty() {
                let v: Value = serde_json::from_slice(&out).expect("a success prints JSON");
                assert!(v.get("cniVersion").is_some(), "a success names its version: {v}");
                assert!(v.get("code").is_none(), "a success is not an error: {v}");
            }
        } else {
            let v: Value = serde_json::from_slice(&out).expect("a failure prints a CNI error object");
            let code = v.get("code").and_then(Value::as_u64).expect("an error has a code");
            assert!(code > 0, "error code 0: {v}");
            assert!(v.get("msg").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "no message: {v}");
        }
    }
});
