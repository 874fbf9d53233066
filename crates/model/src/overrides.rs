//! RunTask's and StartTask's `overrides`, applied to a task definition: the one set of
//! rules the control plane (what a task reserves and shows) and the agent (what it runs)
//! both use.
//!
//! - Task level: `cpu` and `memory` replace the definition's.
//! - Per container, matched by name (an override for a name the definition lacks is
//!   ignored here; RunTask refuses it): `command` replaces the command; each `environment`
//!   variable replaces the one of the same name or is added (the overridden ones come
//!   last, in the override's order); `cpu`, `memory` and `memoryReservation` replace the
//!   definition's.

use crate::wire;

/// The task definition as a task with `overrides` runs it.
pub fn apply(
    def: &wire::TaskDefinition,
    overrides: Option<&wire::TaskOverride>,
) -> wire::TaskDefinition {
    let mut d = def.clone();
    let Some(o) = overrides else { return d };
    if o.cpu.is_some() {
        d.cpu.clone_from(&o.cpu);
    }
    if o.memory.is_some() {
        d.memory.clone_from(&o.memory);
    }
    let containers = o.container_overrides.as_deref().unwrap_or(&[]);
    if let Some(defs) = d.container_definitions.as_mut() {
        for co in containers {
            if let Some(c) = defs.iter_mut().find(|c| c.name == co.name) {
                apply_to_container(c, co);
            }
        }
    }
    d
}

/// One container's override applied to its definition.
pub fn apply_to_container(c: &mut wire::ContainerDefinition, o: &wire::ContainerOverride) {
    if o.command.is_some() {
        c.command.clone_from(&o.command);
    }
    for kv in o.environment.as_deref().unwrap_or(&[]) {
        let env = c.environment.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != kv.name);
        env.push(kv.clone());
    }
    if o.cpu.is_some() {
        c.cpu = o.cpu;
    }
    if o.memory.is_some() {
        c.memory = o.memory;
    }
    if o.memory_reservation.is_some() {
        c.memory_reservation = o.memory_reservation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(name: &str, value: &str) -> wire::KeyValuePair {
        wire::KeyValuePair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    fn definition() -> wire::TaskDefinition {
        wire::TaskDefinition {
            cpu: Some("256".into()),
            memory: Some("512".into()),
            container_definitions: Some(vec![
                wire::ContainerDefinition {
                    name: Some("web".into()),
                    command: Some(vec!["serve".into()]),
                    environment: Some(vec![kv("A", "1"), kv("B", "2")]),
                    cpu: Some(128),
                    memory: Some(256),
                    memory_reservation: Some(64),
                    ..Default::default()
                },
                wire::ContainerDefinition {
                    name: Some("side".into()),
                    command: Some(vec!["idle".into()]),
                    memory: Some(32),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn no_overrides_change_nothing() {
        assert_eq!(apply(&definition(), None), definition());
        let empty = wire::TaskOverride::default();
        assert_eq!(apply(&definition(), Some(&empty)), definition());
    }

    #[test]
    fn task_and_container_overrides_apply_with_one_set_of_rules() {
        let o = wire::TaskOverride {
            cpu: Some("1024".into()),
            memory: Some("2 GB".into()),
            container_overrides: Some(vec![
                wire::ContainerOverride {
                    name: Some("web".into()),
                    command: Some(vec!["migrate".into(), "--now".into()]),
                    environment: Some(vec![kv("A", "override"), kv("C", "3")]),
                    cpu: Some(512),
                    memory: Some(1024),
                    memory_reservation: Some(128),
                    ..Default::default()
                },
                wire::ContainerOverride {
                    name: Some("not-in-the-definition".into()),
                    memory: Some(7),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let d = apply(&definition(), Some(&o));
        assert_eq!(
            (d.cpu.as_deref(), d.memory.as_deref()),
            (Some("1024"), Some("2 GB"))
        );
        let defs = d.container_definitions.unwrap();
        let web = &defs[0];
        assert_eq!(
            web.command,
            Some(vec!["migrate".to_owned(), "--now".to_owned()])
        );
        assert_eq!(
            web.environment,
            Some(vec![kv("B", "2"), kv("A", "override"), kv("C", "3")]),
            "overridden variables replace their namesakes and come last"
        );
        assert_eq!(
            (web.cpu, web.memory, web.memory_reservation),
            (Some(512), Some(1024), Some(128))
        );
        assert_eq!(defs[1], definition().container_definitions.unwrap()[1]);
        assert_eq!(
            defs.len(),
            2,
            "an override for an unknown name adds nothing"
        );
    }

    #[test]
    fn a_partial_container_override_keeps_the_rest() {
        let o = wire::TaskOverride {
            container_overrides: Some(vec![wire::ContainerOverride {
                name: Some("side".into()),
                environment: Some(vec![kv("X", "y")]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let d = apply(&definition(), Some(&o));
        let side = &d.container_definitions.unwrap()[1];
        assert_eq!(side.command, Some(vec!["idle".to_owned()]));
        assert_eq!(side.memory, Some(32));
        assert_eq!(side.environment, Some(vec![kv("X", "y")]));
        assert_eq!(d.cpu.as_deref(), Some("256"));
    }
}
