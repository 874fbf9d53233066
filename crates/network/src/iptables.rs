//! Applies [`crate::rules`] with the `iptables` command (`-w`: waits for the xtables lock
//! other software may hold). Commands run in the calling thread's network namespace.

use std::process::Command;

use crate::error::NetworkError;
use crate::rules::{Position, Rule, Table};

fn iptables(table: Table, args: &[&str]) -> Result<(bool, String), NetworkError> {
    let out = Command::new("iptables")
        .arg("-w")
        .arg("-t")
        .arg(table.as_str())
        .args(args)
        .output()
        .map_err(|e| NetworkError::Iptables {
            args: args.join(" "),
            message: format!("cannot run iptables (is it installed?): {e}"),
        })?;
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    Ok((out.status.success(), text))
}

fn failed(table: Table, args: &[&str], message: String) -> NetworkError {
    NetworkError::Iptables {
        args: format!("-t {} {}", table.as_str(), args.join(" ")),
        message,
    }
}

/// Creates `chain` unless it exists.
pub fn ensure_chain(table: Table, chain: &str) -> Result<(), NetworkError> {
    let (ok, _) = iptables(table, &["-S", chain])?;
    if ok {
        return Ok(());
    }
    let (ok, err) = iptables(table, &["-N", chain])?;
    if ok || err.contains("already exists") {
        Ok(())
    } else {
        Err(failed(table, &["-N", chain], err))
    }
}

fn spec(rule: &Rule) -> Vec<&str> {
    rule.spec.iter().map(String::as_str).collect()
}

/// Whether `rule` is present.
pub fn has_rule(rule: &Rule) -> Result<bool, NetworkError> {
    let mut args = vec!["-C", rule.chain];
    args.extend(spec(rule));
    Ok(iptables(rule.table, &args)?.0)
}

/// Adds `rule` unless it is present (so re-applying is harmless).
pub fn ensure_rule(rule: &Rule) -> Result<(), NetworkError> {
    if has_rule(rule)? {
        return Ok(());
    }
    let mut args = match rule.position {
        Position::First => vec!["-I", rule.chain, "1"],
        Position::Last => vec!["-A", rule.chain],
    };
    args.extend(spec(rule));
    let (ok, err) = iptables(rule.table, &args)?;
    if ok {
        Ok(())
    } else {
        Err(failed(rule.table, &args, err))
    }
}

/// Removes every copy of `rule`; a missing rule is not an error.
pub fn delete_rule(rule: &Rule) -> Result<(), NetworkError> {
    while has_rule(rule)? {
        let mut args = vec!["-D", rule.chain];
        args.extend(spec(rule));
        let (ok, err) = iptables(rule.table, &args)?;
        if !ok {
            return Err(failed(rule.table, &args, err));
        }
    }
    Ok(())
}

/// `iptables -S chain` (empty when the chain does not exist).
pub fn list(table: Table, chain: &str) -> Result<String, NetworkError> {
    let (ok, text) = iptables(table, &["-S", chain])?;
    Ok(if ok { text } else { String::new() })
}
