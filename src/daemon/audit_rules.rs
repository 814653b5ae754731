//! The audit rules the live daemon adds for the link, file and network sensors: the calls each
//! `audit` module reads ([`link_syscalls`], [`file_syscalls`], [`net_syscalls`]), as kernel rules
//! with their filters and keys.

use crate::audit::fileop::{file_syscalls, O_CREAT};
use crate::audit::link::link_syscalls;
use crate::audit::netconn::{net_syscalls, AF_INET, AF_INET6};
use crate::source::netlink::wire::{AUDIT_EQUAL, AUDIT_FILTERKEY};
use crate::source::netlink::{Arch, FieldValue, RuleData, RuleField, WireError};

/// Audit key of the rules [`link_rules`] builds.
pub const LINK_KEY: &str = "auditsentry-link";
/// Audit key of the rules [`file_rules`] builds.
pub const FILE_KEY: &str = "auditsentry-file";
/// Audit key of the rules [`net_rules`] builds.
pub const NET_KEY: &str = "auditsentry-net";

/// `AUDIT_SUCCESS` (`-F success=1`): only calls that succeeded.
const AUDIT_SUCCESS: u32 = 104;
/// `AUDIT_ARG0`; a1 is this plus one, and so on.
pub const AUDIT_ARG0: u32 = 200;
/// The `&` operator of auditctl (`-F a2&0100`): the field has any of the bits.
pub const AUDIT_BIT_MASK: u32 = 0x0800_0000;

/// `-a always,exit -F arch=ARCH -S symlink,symlinkat,link,linkat [-F pid!=PID] -k auditsentry-link`:
/// the rule the live daemon adds per ABI when the extended detector is on.
pub fn link_rules(arch: Arch, exclude_pid: Option<u32>) -> Result<RuleData, WireError> {
    RuleData::syscall_rule(arch, &link_syscalls(arch), exclude_pid, LINK_KEY)
}

/// The audit rules for file events on `arch`, each with `-F success=1 [-F pid!=PID] -k
/// auditsentry-file`: one for the calls that always change a name or the file, and one per open
/// call restricted by `-F aN&0100` to opens with O_CREAT (every other open is not recorded).
pub fn file_rules(arch: Arch, exclude_pid: Option<u32>) -> Result<Vec<RuleData>, WireError> {
    let calls = file_syscalls(arch);
    let mut rules = vec![with_fields(
        RuleData::syscall_rule(arch, &calls.always, exclude_pid, FILE_KEY)?,
        &[(AUDIT_SUCCESS, AUDIT_EQUAL, 1)],
    )];
    for (nr, flags_arg) in calls.opens {
        let rule = RuleData::syscall_rule(arch, &[nr], exclude_pid, FILE_KEY)?;
        rules.push(with_fields(
            rule,
            &[
                (AUDIT_ARG0 + flags_arg, AUDIT_BIT_MASK, O_CREAT),
                (AUDIT_SUCCESS, AUDIT_EQUAL, 1),
            ],
        ));
    }
    Ok(rules)
}

/// The audit rules for network events on `arch` (`[-F pid!=PID] -k auditsentry-net`): one for
/// bind, connect and accept (their address family is only known from the SOCKADDR record), and
/// one per family for `socket()` restricted by `-F a0=2` / `-F a0=10`, so that local (AF_UNIX)
/// sockets are not recorded when they are made.
pub fn net_rules(arch: Arch, exclude_pid: Option<u32>) -> Result<Vec<RuleData>, WireError> {
    let calls = net_syscalls(arch);
    let mut rules = vec![RuleData::syscall_rule(
        arch,
        &calls.main,
        exclude_pid,
        NET_KEY,
    )?];
    for nr in calls.socket {
        for family in [AF_INET, AF_INET6] {
            let rule = RuleData::syscall_rule(arch, &[nr], exclude_pid, NET_KEY)?;
            rules.push(with_fields(rule, &[(AUDIT_ARG0, AUDIT_EQUAL, family)]));
        }
    }
    Ok(rules)
}

/// `rule` with numeric `(field, op, value)` filters added before its key.
fn with_fields(mut rule: RuleData, extra: &[(u32, u32, u32)]) -> RuleData {
    let at = rule
        .fields
        .iter()
        .position(|f| f.field == AUDIT_FILTERKEY)
        .unwrap_or(rule.fields.len());
    for (i, &(field, op, value)) in extra.iter().enumerate() {
        let f = RuleField {
            field,
            op,
            value: FieldValue::Num(value),
        };
        rule.fields.insert(at + i, f);
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_rule_mask_and_key() {
        let rule = link_rules(Arch::X86_64, Some(42)).unwrap();
        let mut mask = [0u32; 64];
        mask[2] = 1 << (86 - 64) | 1 << (88 - 64);
        mask[8] = 1 << (265 - 256) | 1 << (266 - 256);
        assert_eq!(rule.mask, mask);
        assert!(rule.has_key(LINK_KEY.as_bytes()));
        assert_eq!(rule.fields.len(), 3);
    }

    #[test]
    fn rules_filter_opens_on_o_creat() {
        let rules = file_rules(Arch::X86_64, Some(42)).expect("rules");
        assert_eq!(rules.len(), 3);
        for r in &rules {
            assert!(r.has_key(FILE_KEY.as_bytes()));
            assert!(r.fields.iter().any(|f| f.field == AUDIT_SUCCESS));
        }
        let openat = &rules[2];
        assert_eq!(openat.mask[(257 / 32) as usize], 1 << (257 % 32));
        assert!(openat.fields.iter().any(|f| f.field == AUDIT_ARG0 + 2
            && f.op == AUDIT_BIT_MASK
            && f.value == FieldValue::Num(0o100)));
        // The first rule has no open call in it.
        assert_eq!(rules[0].mask[0] & (1 << 2), 0);
        assert_eq!(
            file_rules(Arch::Aarch64, None).map(|r| r.len()).ok(),
            Some(2)
        );
    }

    #[test]
    fn rules_skip_local_sockets_at_creation() {
        let rules = net_rules(Arch::X86_64, Some(7)).expect("rules");
        assert_eq!(rules.len(), 3);
        assert!(rules.iter().all(|r| r.has_key(NET_KEY.as_bytes())));
        assert_eq!(rules[0].mask[1] & (1 << (42 - 32)), 1 << (42 - 32));
        assert_eq!(rules[0].mask[1] & (1 << (41 - 32)), 0);
    }
}
