//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings.
//!
//! A setting is stored per principal; the account default is stored under the
//! account's root principal with the internal marker [`DEFAULT_PRINCIPAL`]. The
//! effective value for a principal is its own setting, else the account default, else
//! the AWS default.

use model::wire::{self, SettingName, SettingType};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::paging::{PageRequest, paginate};
use crate::state::{Change, Record, Scope, SettingRecord, State};

/// Internal principal key of account-wide defaults.
pub const DEFAULT_PRINCIPAL: &str = "(account default)";

fn root(scope: &Scope) -> String {
    format!("arn:aws:iam::{}:root", scope.account)
}

/// AWS's own default for a setting.
pub fn aws_default(name: SettingName) -> &'static str {
    match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat
        | SettingName::TagResourceAuthorization => "enabled",
        SettingName::AwsvpcTrunking
        | SettingName::ContainerInsights
        | SettingName::FargateFIPSMode
        | SettingName::GuardDutyActivate
        | SettingName::FargateEventWindows => "disabled",
        SettingName::FargateTaskRetirementWaitPeriod => "7",
        SettingName::DefaultLogDriverMode => "non-blocking",
    }
}

/// The values ECS accepts for a setting (PutAccountSetting's `value` documentation).
pub fn allowed_values(name: SettingName) -> &'static [&'static str] {
    match name {
        SettingName::ContainerInsights => &["enabled", "disabled", "enhanced"],
        SettingName::FargateTaskRetirementWaitPeriod => &["0", "7", "14"],
        SettingName::DefaultLogDriverMode => &["blocking", "non-blocking"],
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat
        | SettingName::AwsvpcTrunking
        | SettingName::FargateFIPSMode
        | SettingName::TagResourceAuthorization
        | SettingName::GuardDutyActivate
        | SettingName::FargateEventWindows => &["enabled", "disabled"],
    }
}

fn validate_value(name: SettingName, value: &str) -> Result<(), EcsError> {
    // ECS: "read-only in Amazon ECS"; Amazon GuardDuty sets it for the account.
    if name == SettingName::GuardDutyActivate {
        return Err(invalid(
            "guardDutyActivate is read-only: Amazon GuardDuty controls this account setting.",
        ));
    }
    let allowed = allowed_values(name);
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid value {value:?} for setting {name}: value should be one of [{}]",
            allowed.join(",")
        )))
    }
}

fn validate_principal(scope: &Scope, p: &str) -> Result<(), EcsError> {
    let prefix = format!("arn:aws:iam::{}:", scope.account);
    match p.strip_prefix(&prefix) {
        Some(rest) if rest == "root" || rest.starts_with("user/") || rest.starts_with("role/") => {
            Ok(())
        }
        _ => Err(invalid(format!(
            "principalArn {p:?} is not an IAM root, user or role ARN of account {}.",
            scope.account
        ))),
    }
}

fn record(
    scope: &Scope,
    principal_key: &str,
    name: SettingName,
    value: &str,
    shown_principal: String,
) -> SettingRecord {
    SettingRecord {
        scope: scope.clone(),
        setting: wire::Setting {
            name: Some(name),
            value: Some(value.to_owned()),
            principal_arn: Some(if principal_key == DEFAULT_PRINCIPAL {
                DEFAULT_PRINCIPAL.to_owned()
            } else {
                shown_principal
            }),
            r#type: Some(SettingType::User),
        },
    }
}

fn shown(scope: &Scope, s: &wire::Setting) -> wire::Setting {
    let mut s = s.clone();
    if s.principal_arn.as_deref() == Some(DEFAULT_PRINCIPAL) {
        s.principal_arn = Some(root(scope));
    }
    s
}

/// The key a principal's settings are stored under. The account root's own settings
/// are the account defaults, as on AWS: setting one for the root sets it for every
/// principal without a setting of its own.
fn principal_key<'a>(scope: &Scope, principal: &'a str) -> &'a str {
    if principal == root(scope) {
        DEFAULT_PRINCIPAL
    } else {
        principal
    }
}

fn get<'a>(
    state: &'a State,
    scope: &Scope,
    principal: &str,
    name: SettingName,
) -> Option<&'a SettingRecord> {
    let key = principal_key(scope, principal);
    state
        .settings
        .get(&(scope.clone(), key.to_owned(), name.as_str().to_owned()))
}

fn put_setting(
    ctx: &Ctx,
    principal: &str,
    name: Option<SettingName>,
    value: Option<String>,
) -> Result<(wire::Setting, Vec<Change>), EcsError> {
    let name = name.ok_or_else(|| invalid("name is required."))?;
    let value = value.ok_or_else(|| invalid("value is required."))?;
    validate_value(name, &value)?;
    let rec = record(
        &ctx.scope,
        principal_key(&ctx.scope, principal),
        name,
        &value,
        principal.to_owned(),
    );
    Ok((
        shown(&ctx.scope, &rec.setting),
        vec![Change::Put(Record::Setting(rec))],
    ))
}

/// PutAccountSetting: for `principalArn`, or the caller (the account root).
pub fn put(
    _state: &State,
    ctx: &mut Ctx,
    req: wire::PutAccountSettingRequest,
) -> Written<wire::PutAccountSettingResponse> {
    let principal = req.principal_arn.unwrap_or_else(|| root(&ctx.scope));
    validate_principal(&ctx.scope, &principal)?;
    let (setting, changes) = put_setting(ctx, &principal, req.name, req.value)?;
    Ok((
        wire::PutAccountSettingResponse {
            setting: Some(setting),
        },
        changes,
    ))
}

/// PutAccountSettingDefault: the account-wide default.
pub fn put_default(
    _state: &State,
    ctx: &mut Ctx,
    req: wire::PutAccountSettingDefaultRequest,
) -> Written<wire::PutAccountSettingDefaultResponse> {
    let (setting, changes) = put_setting(ctx, DEFAULT_PRINCIPAL, req.name, req.value)?;
    Ok((
        wire::PutAccountSettingDefaultResponse {
            setting: Some(setting),
        },
        changes,
    ))
}

/// DeleteAccountSetting: removes a principal's own setting; answers with it.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteAccountSettingRequest,
) -> Written<wire::DeleteAccountSettingResponse> {
    let name = req.name.ok_or_else(|| invalid("name is required."))?;
    let principal = req.principal_arn.unwrap_or_else(|| root(&ctx.scope));
    validate_principal(&ctx.scope, &principal)?;
    match get(state, &ctx.scope, &principal, name) {
        Some(rec) => Ok((
            wire::DeleteAccountSettingResponse {
                setting: Some(shown(&ctx.scope, &rec.setting)),
            },
            vec![Change::Delete(Record::Setting(rec.clone()))],
        )),
        None => Err(invalid(format!(
            "No {name} setting is set for principal {principal}."
        ))),
    }
}

/// ListAccountSettings: the principal's own settings, or with `effectiveSettings` the
/// value in force for every setting.
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListAccountSettingsRequest,
) -> Result<wire::ListAccountSettingsResponse, EcsError> {
    let principal = req.principal_arn.clone().unwrap_or_else(|| root(scope));
    validate_principal(scope, &principal)?;
    if req.value.is_some() && req.name.is_none() {
        return Err(invalid("value can only be given together with name."));
    }
    let effective = req.effective_settings.unwrap_or(false);
    let mut settings: Vec<wire::Setting> = Vec::new();
    for &name in SettingName::ALL {
        if req.name.is_some_and(|n| n != name) {
            continue;
        }
        let own = get(state, scope, &principal, name).map(|r| shown(scope, &r.setting));
        let value = if effective {
            own.or_else(|| {
                get(state, scope, DEFAULT_PRINCIPAL, name).map(|r| shown(scope, &r.setting))
            })
            .or_else(|| {
                Some(wire::Setting {
                    name: Some(name),
                    value: Some(aws_default(name).to_owned()),
                    principal_arn: Some(principal.clone()),
                    r#type: Some(SettingType::AwsManaged),
                })
            })
        } else {
            own
        };
        if let Some(s) = value
            && req
                .value
                .as_ref()
                .is_none_or(|v| s.value.as_ref() == Some(v))
        {
            settings.push(s);
        }
    }
    let filters = format!(
        "{principal}|{}|{}|{effective}",
        req.name.map(|n| n.as_str()).unwrap_or(""),
        req.value.as_deref().unwrap_or("")
    );
    // Pages resume after the last key, so the items must come in key order.
    let mut items: Vec<(String, wire::Setting)> = settings
        .into_iter()
        .map(|s| (s.name.map(|n| n.as_str().to_owned()).unwrap_or_default(), s))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListAccountSettings",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        )
        .with_limit(10),
        // At most one setting per name (a few dozen): sorted, the page drops what comes
        // up to the last key.
        |_| Ok(items),
    )?;
    Ok(wire::ListAccountSettingsResponse {
        settings: Some(page.items),
        next_token: page.next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_page(
        state: &State,
        scope: &Scope,
        token: Option<String>,
    ) -> wire::ListAccountSettingsResponse {
        let req = wire::ListAccountSettingsRequest {
            effective_settings: Some(true),
            max_results: Some(3),
            next_token: token,
            ..Default::default()
        };
        list(state, scope, 1000.0, req).unwrap()
    }

    fn setting(state: &mut State, scope: &Scope, principal: Option<&str>, value: &str) {
        let mut ctx = Ctx::new(scope.clone(), 1000.0, 1);
        let req = wire::PutAccountSettingRequest {
            name: Some(SettingName::ContainerInsights),
            value: Some(value.into()),
            principal_arn: principal.map(str::to_owned),
        };
        let (_, changes) = put(state, &mut ctx, req).unwrap();
        for c in &changes {
            state.apply(c);
        }
    }

    fn effective(state: &State, scope: &Scope, principal: &str) -> String {
        let req = wire::ListAccountSettingsRequest {
            name: Some(SettingName::ContainerInsights),
            principal_arn: Some(principal.into()),
            effective_settings: Some(true),
            ..Default::default()
        };
        let s = list(state, scope, 1000.0, req).unwrap().settings.unwrap();
        s[0].value.clone().unwrap()
    }

    #[test]
    fn the_root_principals_setting_is_the_account_default() {
        let mut state = State::default();
        let scope = Scope::new("000000000000", "us-east-1");
        let bob = "arn:aws:iam::000000000000:user/bob";
        setting(&mut state, &scope, None, "enabled");
        assert_eq!(effective(&state, &scope, bob), "enabled");
        setting(&mut state, &scope, Some(bob), "enhanced");
        assert_eq!(effective(&state, &scope, bob), "enhanced");
        assert_eq!(
            effective(&state, &scope, "arn:aws:iam::000000000000:root"),
            "enabled"
        );
        let mut ctx = Ctx::new(scope.clone(), 1000.0, 1);
        let req = wire::DeleteAccountSettingRequest {
            name: Some(SettingName::ContainerInsights),
            principal_arn: None,
        };
        let (resp, _) = delete(&state, &mut ctx, req).unwrap();
        assert_eq!(
            resp.setting.unwrap().principal_arn.as_deref(),
            Some("arn:aws:iam::000000000000:root")
        );
    }

    #[test]
    fn effective_settings_page_through_every_setting_once() {
        let state = State::default();
        let scope = Scope::new("000000000000", "us-east-1");
        let (mut seen, mut token) = (Vec::new(), None);
        loop {
            let page = list_page(&state, &scope, token);
            seen.extend(
                page.settings
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.name.unwrap().as_str().to_owned()),
            );
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut expected: Vec<String> = SettingName::ALL
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        expected.sort();
        assert_eq!(seen, expected);
    }
}
