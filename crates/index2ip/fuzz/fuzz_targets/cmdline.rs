//! Any command line: the parser accepts or refuses without panicking, and every address it then allocates keeps
//! the invariants (inside the node's subnet, not its network, broadcast or gateway address, distinct per index).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(keys) = index2ip::NodeKeys::parse(&text) else { return };
    let room = index2ip::capacity(&keys);
    let mut seen = std::collections::HashSet::new();
    for i in 1..=260u64 {
        let Some(index) = index2ip::Index::new(i) else { continue };
        match index2ip::allocate(&keys, index) {
            Ok(a) => {
                let n = keys.v4.node;
                assert!(n.contains(&a.v4.addr()));
                assert_ne!(a.v4.addr(), keys.v4.gateway);
                if n.prefix_len() <= 30 {
                    assert_ne!(a.v4.addr(), n.network());
                    assert_ne!(a.v4.addr(), n.broadcast());
                }
                assert!(seen.insert(a.v4.addr()));
                if let (Some(v6), Some(k6)) = (a.v6, &keys.v6) {
                    assert!(k6.node.contains(&v6.addr()));
                    assert_ne!(v6.addr(), k6.gateway);
                }
            }
            Err(e) => {
                assert_eq!(e.capacity, room);
                assert!(u64::from(room) < i);
            }
        }
    }
});
