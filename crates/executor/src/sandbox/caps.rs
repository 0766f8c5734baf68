//! Capabilities: cut to Docker's default set (which BuildKit also uses for RUN).

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub(crate) const DEFAULT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

pub(crate) fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0u64, |m, c| m | (1u64 << c))
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops every capability outside the default set from the bounding set and
/// clears the ambient set. Needs CAP_SETPCAP; call before changing ids.
pub(crate) fn drop_bounding() -> Result<(), String> {
    let keep = default_mask();
    for cap in 0..=last_cap().min(63) {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // beyond the kernel's last capability
            }
            return Err(format!(
                "dropping capability {cap} from the bounding set: {e}"
            ));
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets permitted = effective = the default set and inheritable = empty (as
/// Docker does since CVE-2022-24769). For uid 0; other uids lose all
/// capabilities on setuid.
pub(crate) fn set_default_caps() -> Result<(), String> {
    let mask = default_mask();
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    for (i, d) in data.iter_mut().enumerate() {
        let word = (mask >> (32 * i)) as u32;
        d.effective = word;
        d.permitted = word;
    }
    // SAFETY: capset(2) with a valid v3 header and two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(format!(
            "setting capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_default_mask() {
        // CapEff of a default `docker run` as root.
        assert_eq!(super::default_mask(), 0xa80425fb);
    }
}
