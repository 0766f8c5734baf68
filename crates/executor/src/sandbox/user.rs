//! Dockerfile `USER` resolution through the rootfs's `/etc/passwd` and
//! `/etc/group`, with the semantics of runc's `user.GetExecUser` (which
//! Docker and BuildKit use).

/// The ids a step runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (not including `gid` unless /etc/group lists it).
    pub sgids: Vec<u32>,
    /// Home directory from passwd, `/` when unknown.
    pub home: String,
}

/// Largest id runc accepts.
const MAX_ID: u64 = i32::MAX as u64;

struct PasswdEntry<'a> {
    name: &'a str,
    uid: Option<u32>,
    gid: Option<u32>,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: Option<u32>,
    members: Vec<&'a str>,
}

fn entries(file: &str) -> impl Iterator<Item = Vec<&str>> {
    file.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_passwd(file: &str) -> Vec<PasswdEntry<'_>> {
    entries(file)
        .map(|f| PasswdEntry {
            name: f.first().copied().unwrap_or(""),
            uid: f.get(2).and_then(|s| s.trim().parse().ok()),
            gid: f.get(3).and_then(|s| s.trim().parse().ok()),
            home: f.get(5).copied().unwrap_or(""),
        })
        .collect()
}

fn parse_group(file: &str) -> Vec<GroupEntry<'_>> {
    entries(file)
        .map(|f| GroupEntry {
            name: f.first().copied().unwrap_or(""),
            gid: f.get(2).and_then(|s| s.trim().parse().ok()),
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn parse_id(s: &str) -> Option<Result<u32, String>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u64>() {
        Ok(n) if n <= MAX_ID => Ok(n as u32),
        _ => Err(format!("uids and gids must be in range 0-{MAX_ID}")),
    })
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) against
/// the contents of the rootfs's passwd and group files (`None` when missing).
pub(crate) fn resolve(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, String> {
    let (user_arg, group_arg) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let group_arg = group_arg.filter(|g| !g.is_empty());

    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        sgids: Vec::new(),
        home: "/".to_string(),
    };

    let user_num = parse_id(user_arg).transpose()?;
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let matched = users
        .iter()
        .find(|e| e.name == user_arg || (user_num.is_some() && e.uid == user_num));
    let matched_name = match matched {
        Some(e) => {
            out.uid = e
                .uid
                .ok_or_else(|| format!("invalid uid for user {user_arg} in passwd file"))?;
            out.gid = e.gid.unwrap_or(0);
            if !e.home.is_empty() {
                out.home = e.home.to_string();
            }
            Some(e.name)
        }
        None => match user_num {
            Some(uid) => {
                out.uid = uid;
                None
            }
            None => {
                return Err(format!(
                    "unable to find user {user_arg}: no matching entries in passwd file"
                ))
            }
        },
    };

    let groups = group.map(parse_group).unwrap_or_default();
    match group_arg {
        Some(g) => {
            let group_num = parse_id(g).transpose()?;
            let found = groups
                .iter()
                .find(|e| e.name == g || (group_num.is_some() && e.gid == group_num));
            out.gid = match (found, group_num) {
                (Some(e), _) => e
                    .gid
                    .ok_or_else(|| format!("invalid gid for group {g} in group file"))?,
                (None, Some(n)) => n,
                (None, None) => {
                    return Err(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                }
            };
        }
        None => {
            // Supplementary groups only in the implicit form (runc).
            if let Some(name) = matched_name {
                for e in &groups {
                    if let Some(gid) = e.gid {
                        if e.members.contains(&name) && !out.sgids.contains(&gid) {
                            out.sgids.push(gid);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\n\
        nogroup:x:65534:\naudio:x:29:nobody,app\n";

    fn r(u: &str) -> Result<ExecUser, String> {
        resolve(u, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn root_default() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.sgids, vec![10]);
        let u = resolve("", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn by_name_and_number() {
        let u = r("nobody").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str()),
            (65534, 65534, "/nonexistent")
        );
        assert_eq!(u.sgids, vec![29]);
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.sgids, vec![10, 50, 29]);
    }

    #[test]
    fn numeric_without_files() {
        let u = resolve("1234:5678", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 5678, "/"));
        assert!(u.sgids.is_empty());
        let u = resolve("1234", None, None).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 0));
    }

    #[test]
    fn explicit_group_drops_supplementary() {
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.sgids.is_empty());
        let u = r("app:777").unwrap();
        assert_eq!(u.gid, 777);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            r("bogus").unwrap_err(),
            "unable to find user bogus: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("bogus", None, None).unwrap_err(),
            "unable to find user bogus: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:bogus").unwrap_err(),
            "unable to find group bogus: no matching entries in group file"
        );
        assert!(r("99999999999").is_err());
    }
}
