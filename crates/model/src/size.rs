//! CPU and memory sizes of task definitions.
//!
//! ECS accepts task-level `cpu` as units (`"1024"`) or vCPU (`"1 vCPU"`, `"0.25 vcpu"`) and
//! `memory` as MiB (`"2048"`) or GB (`"2 GB"`, `"2GB"`), and stores the normalised integer
//! strings. Fargate allows only the combinations in [`FARGATE_SIZES`].

/// One row of the Fargate task-size table: a CPU value and the memory values it allows.
#[derive(Debug, Clone, Copy)]
pub struct FargateSize {
    /// CPU units (1024 = 1 vCPU).
    pub cpu: u32,
    /// Smallest memory in MiB.
    pub memory_min: u32,
    /// Largest memory in MiB.
    pub memory_max: u32,
    /// Step between allowed memory values.
    pub memory_step: u32,
}

/// The Fargate task-size table (Linux), as AWS documents it: 0.25 vCPU with 0.5, 1 or
/// 2 GB ([`FARGATE_256_MEMORY`]: not 1.5 GB, although the row's step would allow it);
/// 0.5, 1, 2 and 4 vCPU in 1 GB steps; 8 vCPU with 16–60 GB in 4 GB steps; 16 vCPU with
/// 32–120 GB in 8 GB steps.
pub const FARGATE_SIZES: &[FargateSize] = &[
    FargateSize {
        cpu: 256,
        memory_min: 512,
        memory_max: 2048,
        memory_step: 512,
    },
    FargateSize {
        cpu: 512,
        memory_min: 1024,
        memory_max: 4096,
        memory_step: 1024,
    },
    FargateSize {
        cpu: 1024,
        memory_min: 2048,
        memory_max: 8192,
        memory_step: 1024,
    },
    FargateSize {
        cpu: 2048,
        memory_min: 4096,
        memory_max: 16384,
        memory_step: 1024,
    },
    FargateSize {
        cpu: 4096,
        memory_min: 8192,
        memory_max: 30720,
        memory_step: 1024,
    },
    FargateSize {
        cpu: 8192,
        memory_min: 16384,
        memory_max: 61440,
        memory_step: 4096,
    },
    FargateSize {
        cpu: 16384,
        memory_min: 32768,
        memory_max: 122_880,
        memory_step: 8192,
    },
];

/// The memory values (MiB) Fargate allows with 256 CPU units: the only row that is not
/// an evenly stepped range.
pub const FARGATE_256_MEMORY: &[u32] = &[512, 1024, 2048];

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The string is neither a number nor a number with a known unit.
    #[error("invalid {field} value {value:?}: expected e.g. \"{example}\"")]
    Unparsable {
        /// `cpu` or `memory`.
        field: &'static str,
        /// The input.
        value: String,
        /// A valid example for the message.
        example: &'static str,
    },
    /// The cpu/memory pair is not in the Fargate table.
    #[error(
        "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
    )]
    NotAFargateSize {
        /// CPU units.
        cpu: u32,
        /// Memory MiB.
        memory: u32,
    },
    /// Outside the EC2 range.
    #[error("Invalid 'cpu' setting for task: {cpu} is outside 128..=196608 units")]
    CpuOutOfRange {
        /// CPU units.
        cpu: u32,
    },
}

fn parse_number_with_unit(value: &str) -> Option<(f64, String)> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    if !num.is_finite() || num < 0.0 {
        return None;
    }
    Some((num, unit.trim().to_ascii_lowercase()))
}

fn to_u32(x: f64) -> Option<u32> {
    let r = x.round();
    if (r - x).abs() > 1e-9 || r > f64::from(u32::MAX) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(r as u32)
}

/// Parses task-level CPU: `"1024"`, `"1 vCPU"`, `"0.25 vcpu"` → units.
pub fn parse_cpu(value: &str) -> Result<u32, SizeError> {
    let err = || SizeError::Unparsable {
        field: "cpu",
        value: value.to_owned(),
        example: "1 vCPU",
    };
    let (num, unit) = parse_number_with_unit(value).ok_or_else(err)?;
    match unit.as_str() {
        "" => to_u32(num),
        "vcpu" => to_u32(num * 1024.0),
        _ => None,
    }
    .ok_or_else(err)
}

/// Parses task-level memory: `"2048"`, `"2 GB"`, `"0.5GB"` → MiB.
pub fn parse_memory(value: &str) -> Result<u32, SizeError> {
    let err = || SizeError::Unparsable {
        field: "memory",
        value: value.to_owned(),
        example: "2 GB",
    };
    let (num, unit) = parse_number_with_unit(value).ok_or_else(err)?;
    match unit.as_str() {
        "" | "mb" | "mib" => to_u32(num),
        "gb" | "gib" => to_u32(num * 1024.0),
        _ => None,
    }
    .ok_or_else(err)
}

/// Checks a cpu/memory pair against the Fargate table.
pub fn check_fargate(cpu: u32, memory: u32) -> Result<(), SizeError> {
    let ok = FARGATE_SIZES.iter().any(|s| {
        s.cpu == cpu
            && memory >= s.memory_min
            && memory <= s.memory_max
            && (memory - s.memory_min).is_multiple_of(s.memory_step)
    }) && (cpu != 256 || FARGATE_256_MEMORY.contains(&memory));
    if ok {
        Ok(())
    } else {
        Err(SizeError::NotAFargateSize { cpu, memory })
    }
}

/// Checks task CPU for EC2/EXTERNAL launch types (128..=196608 units).
pub fn check_ec2_cpu(cpu: u32) -> Result<(), SizeError> {
    if (128..=196_608).contains(&cpu) {
        Ok(())
    } else {
        Err(SizeError::CpuOutOfRange { cpu })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_forms() {
        assert_eq!(parse_cpu("1024"), Ok(1024));
        assert_eq!(parse_cpu("1 vCPU"), Ok(1024));
        assert_eq!(parse_cpu("0.25 vcpu"), Ok(256));
        assert_eq!(parse_cpu(".5 vCPU"), Ok(512));
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("1 GHz").is_err());
        assert!(parse_cpu("-1").is_err());
    }

    #[test]
    fn parses_memory_forms() {
        assert_eq!(parse_memory("2048"), Ok(2048));
        assert_eq!(parse_memory("2 GB"), Ok(2048));
        assert_eq!(parse_memory("0.5GB"), Ok(512));
        assert!(parse_memory("2 TB").is_err());
        assert!(parse_memory("1.5").is_err());
    }

    #[test]
    fn fargate_table_is_enforced() {
        assert!(check_fargate(256, 512).is_ok());
        assert!(check_fargate(256, 2048).is_ok());
        assert!(check_fargate(256, 3072).is_err());
        assert!(check_fargate(1024, 3072).is_ok());
        assert!(check_fargate(1024, 1024).is_err());
        assert!(check_fargate(8192, 20480).is_ok());
        assert!(check_fargate(8192, 18432).is_err());
        assert!(check_fargate(300, 1024).is_err());
    }

    /// Every row of AWS's table at its edges, and the values just outside.
    #[test]
    fn fargate_table_matches_aws() {
        let valid: &[(u32, &[u32])] = &[
            (256, &[512, 1024, 2048]),
            (512, &[1024, 2048, 3072, 4096]),
            (1024, &[2048, 5120, 8192]),
            (2048, &[4096, 16384]),
            (4096, &[8192, 30720]),
            (8192, &[16384, 20480, 61440]),
            (16384, &[32768, 40960, 122_880]),
        ];
        for (cpu, mems) in valid {
            for m in *mems {
                assert!(check_fargate(*cpu, *m).is_ok(), "{cpu}/{m}");
            }
        }
        let invalid: &[(u32, u32)] = &[
            (256, 1536),
            (256, 256),
            (512, 512),
            (512, 5120),
            (1024, 9216),
            (2048, 17408),
            (4096, 31744),
            (8192, 65536),
            (16384, 36864),
            (16384, 131_072),
            (32768, 65536),
        ];
        for (cpu, m) in invalid {
            assert!(check_fargate(*cpu, *m).is_err(), "{cpu}/{m}");
        }
        assert_eq!(
            check_fargate(256, 4096).unwrap_err().to_string(),
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory. \
             See the Amazon ECS documentation for the valid values."
        );
    }
}
