//! A plugin host's confinement, applied by the host to itself.
//!
//! [`limit`] runs first, before the library is mapped: no new privileges (setuid
//! binaries and file capabilities stop working), an address-space data limit (heap,
//! anonymous maps and thread stacks: an allocation past it fails and the host dies of
//! it, alone), no core files (a core would hold the passwords in flight), and no
//! capabilities (those of a daemon run as root) but the two that let root reach files
//! of other users (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): an instance of a root
//! daemon or of `flaskbbd check` run by root opens its `sandbox.write` file in the
//! daemon user's private state directory. Those two are kept only while landlock
//! governs the filesystem (a kernel without it loses them in [`confine`]) and are
//! given up by [`drop_capabilities`] once the instance is made, before any call (a
//! thread the plugin started while being made keeps them, inside landlock's rules).
//!
//! [`confine`] runs once the library is mapped, before the instance is made:
//! - landlock (where the kernel has it): the filesystem shrinks to what the instance
//!   declared in `sandbox.read` and `sandbox.write`, plus time zone data and
//!   `/dev/null`/`/dev/urandom`, plus the resolver's files and shared libraries when it
//!   may use the network; from ABI 6 it also cannot signal processes outside its
//!   sandbox (the daemon) nor reach abstract Unix sockets; unless `sandbox.network`,
//!   from ABI 4 it can neither bind nor connect a TCP socket, however it was made;
//! - a seccomp filter that refuses (EPERM) what no plugin needs: running programs,
//!   forking, tracing or signalling other processes, mounts, namespaces, kernel
//!   modules, BPF, io_uring (whose requests the filter would not see), keyrings, clock
//!   changes, x32 system calls; and, unless `sandbox.network`, opening any socket (with
//!   it: TCP and UDP over IPv4/IPv6 and Unix sockets only, never raw, packet or
//!   netlink sockets); socket pairs other than Unix ones; and (ENOSYS) every system
//!   call newer than those it was written against.
//!
//! Both are inherited by every thread the plugin starts.

use std::{
    io,
    path::{Path, PathBuf},
};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::ipc::Sandbox;

/// Files every host may read: time zone data and the two harmless devices.
const BASE_READ: &[&str] = &[
    "/dev/null",
    "/dev/urandom",
    "/etc/localtime",
    "/usr/share/zoneinfo",
];

/// What a host with `sandbox.network` may read besides: the resolver's configuration,
/// the NSS modules it loads, and the system's certificates (for TLS).
pub(crate) const NETWORK_READ: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ld.so.cache",
    "/etc/ssl",
    "/etc/pki",
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/ca-certificates",
];

/// The landlock ABI the rules are written for; older kernels get what they have.
const LANDLOCK_ABI: ABI = ABI::V6;

/// No new privileges, the memory limit, no core files.
pub(crate) fn limit(s: &Sandbox) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_limit(libc::RLIMIT_DATA, s.memory_bytes)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    // SAFETY: geteuid has no preconditions.
    let keep = if unsafe { libc::geteuid() } == 0 {
        FILE_CAPABILITIES
    } else {
        0
    };
    set_capabilities(keep)
}

/// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as bits of the first capability word.
const FILE_CAPABILITIES: u32 = (1 << 1) | (1 << 2);

/// Gives up every capability of the calling thread. The host calls it once the
/// instance is made: no call is ever served with one.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    set_capabilities(0)
}

/// Keeps only the capabilities in `keep` (effective and permitted; none inheritable;
/// the ambient set follows). A daemon run as root starts its hosts with all of them,
/// and CAP_NET_RAW, CAP_NET_ADMIN or CAP_SYS_PTRACE would make any socket the filter
/// let through worth more. Capabilities are per thread and inherited by new ones:
/// [`limit`] runs while the host has one thread.
fn set_capabilities(keep: u32) -> io::Result<()> {
    /// struct __user_cap_header_struct.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    /// struct __user_cap_data_struct.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let sets = [
        Data {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
        none,
    ];
    // SAFETY: capset on the calling thread (pid 0) with a version-3 header and the two
    // data structs that version reads, both alive for the call.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, sets.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // prlimit rather than setrlimit: the same call, and a service manager's system
    // call filter that denies setrlimit (systemd's ~@resources) lets prlimit64 through.
    // SAFETY: prlimit on our own process (pid 0) with a struct we own.
    if unsafe { libc::prlimit(0, resource, &lim, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Landlock, then seccomp. Answers how far landlock got on this kernel.
pub(crate) fn confine(s: &Sandbox) -> Result<String, String> {
    let landlock = restrict_filesystem(s)?;
    filter_syscalls(s.network)?;
    Ok(landlock)
}

/// What to do when the service manager's own filter refuses the sandbox's calls.
const FILTERED: &str =
    "a system call filter refused it (systemd's SystemCallFilter=@system-service \
     needs landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp added, as \
     daemon/systemd/flaskbbd.service does)";

fn restrict_filesystem(s: &Sandbox) -> Result<String, String> {
    let abi = LANDLOCK_ABI;
    let fail = |e: landlock::RulesetError| {
        let text = e.to_string();
        if text.contains("Operation not permitted") {
            format!("landlock: {text}: {FILTERED}")
        } else {
            format!("landlock: {text}")
        }
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?;
    if !s.network {
        // Handled and granted to no port: no TCP bind or connect at all (from ABI 4),
        // whatever route made the socket.
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(fail)?;
    }
    let mut ruleset = ruleset
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    let mut base: Vec<&str> = BASE_READ.to_vec();
    if s.network {
        base.extend_from_slice(NETWORK_READ);
    }
    // The base paths are granted where they exist on this system.
    for p in base {
        if Path::new(p).exists() {
            ruleset = ruleset
                .add_rule(rule(Path::new(p), AccessFs::from_read(abi))?)
                .map_err(fail)?;
        }
    }
    // The declared ones must exist: a typo would otherwise be a silent denial.
    for (paths, access, key) in [
        (&s.read, AccessFs::from_read(abi), "read"),
        (&s.write, AccessFs::from_all(abi), "write"),
    ] {
        for p in paths {
            if !p.exists() {
                return Err(format!(
                    "sandbox.{key}: {} does not exist (create it, or name the directory it will be created in)",
                    p.display()
                ));
            }
            ruleset = ruleset.add_rule(rule(p, access)?).map_err(fail)?;
        }
    }
    let status = ruleset.restrict_self().map_err(fail)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        // Nothing governs the filesystem: a root host must not reach other users' files.
        drop_capabilities().map_err(|e| format!("capabilities: {e}"))?;
    }
    let filesystem = match status.ruleset {
        RulesetStatus::FullyEnforced => "enforced",
        RulesetStatus::PartiallyEnforced => {
            "partly enforced (this kernel's landlock is older than ABI 6)"
        }
        RulesetStatus::NotEnforced => "not available on this kernel",
    };
    let network_rules = status.ruleset != RulesetStatus::NotEnforced
        && matches!(
            status.landlock,
            LandlockStatus::Available { effective_abi, .. } if effective_abi >= ABI::V4
        );
    Ok(format!(
        "{filesystem}, {}",
        network_status(s.network, network_rules)
    ))
}

/// What the status line says of the network: whether landlock's TCP rules hold.
fn network_status(network: bool, rules_enforced: bool) -> &'static str {
    match (network, rules_enforced) {
        (true, _) => "network open (sandbox.network)",
        (false, true) => "network closed",
        (false, false) => {
            "network closed by seccomp only (no landlock TCP rules before ABI 4, Linux 6.7)"
        }
    }
}

/// A rule granting `access` beneath `path` (on a file, only the rights a file has).
fn rule(path: &Path, access: landlock::BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, String> {
    let fd = PathFd::new(path).map_err(|e| format!("landlock: {}: {e}", path.display()))?;
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(LANDLOCK_ABI)
    };
    Ok(PathBeneath::new(fd, access))
}

/// The system calls refused with EPERM, whatever their arguments.
const DENIED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_getfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    // io_uring runs system calls on the process's behalf from kernel threads, where no
    // seccomp filter sees them: IORING_OP_SOCKET and IORING_OP_CONNECT would reach the
    // network with `socket` refused. No plugin needs it. EPERM, not ENOSYS: it is what
    // the kernel itself answers where io_uring is switched off
    // (kernel.io_uring_disabled = 2), which libraries that try io_uring take as "not
    // here, use epoll", and it says "refused", not "this kernel is old".
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Kernel attack surface no plugin needs.
    libc::SYS_personality,
    libc::SYS_vhangup,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_migrate_pages,
    libc::SYS_move_pages,
    libc::SYS_set_mempolicy,
    libc::SYS_fanotify_mark,
    libc::SYS_process_madvise,
    libc::SYS_kcmp,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// `ioprio_set`'s `which` for one process (linux/ioprio.h; not in the libc crate).
const IOPRIO_WHO_PROCESS: u64 = 1;

/// Namespace flags refused in `clone` (a thread has none).
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// Installs the host's seccomp filters on all its threads, in this order: the one
/// that refuses (EPERM) what [`refused_rules`] names, the one that answers `clone3`
/// ENOSYS, and the one that refuses every unknown system call ([`unknown_refused`]).
fn filter_syscalls(network: bool) -> Result<(), String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|_| {
        format!(
            "seccomp: no filter for the {} architecture",
            std::env::consts::ARCH
        )
    })?;
    let denied = compile(
        refused_rules(network)?,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    // clone3 passes its flags in memory a filter cannot read: answer ENOSYS, and the C
    // library falls back to clone, whose flags it can.
    let clone3 = compile(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    for program in &[denied, clone3, unknown_refused()] {
        seccompiler::apply_filter_all_threads(program).map_err(|e| {
            let text = e.to_string();
            if text.contains("Operation not permitted") {
                format!("seccomp: {text}: {FILTERED}")
            } else {
                format!("seccomp: {text}")
            }
        })?;
    }
    Ok(())
}

/// The program of a filter for `arch` that answers `refused` to the calls `rules`
/// match (a call with no rules, always) and allows the rest.
fn compile(
    rules: std::collections::BTreeMap<i64, Vec<SeccompRule>>,
    refused: SeccompAction,
    arch: seccompiler::TargetArch,
) -> Result<BpfProgram, String> {
    let fail = |e: seccompiler::BackendError| format!("seccomp: {e}");
    SeccompFilter::new(rules, SeccompAction::Allow, refused, arch)
        .map_err(fail)?
        .try_into()
        .map_err(fail)
}

/// The calls the first filter refuses: every one in [`DENIED`]; signals to other
/// processes; changes to another process's scheduling or limits; the `clone`s of
/// [`clone_rules`]; the `socket`s of [`socket_rules`]; and socket pairs other than
/// Unix ones.
fn refused_rules(
    network: bool,
) -> Result<std::collections::BTreeMap<i64, Vec<SeccompRule>>, String> {
    let pid = u64::from(std::process::id());
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, vec![])).collect();
    // Signals to itself (abort, a thread's) only.
    for nr in [
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
    ] {
        rules.insert(nr, vec![when(vec![ne(0, pid)?])?]);
    }
    // Scheduling and limits of itself only (0 or its own pid): the host runs as the
    // daemon's user, so these could otherwise pin, starve or renice the daemon (or any
    // process of its user), or take away its open files (`prlimit64`). A thread's own
    // id is refused too: a plugin cannot pin its threads one by one.
    let not_own = |index| Ok::<_, String>(vec![ne(index, 0)?, ne(index, pid)?]);
    for nr in [
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setattr,
        libc::SYS_prlimit64,
    ] {
        rules.insert(nr, vec![when(not_own(0)?)?]);
    }
    // `setpriority(which, who, ..)` and `ioprio_set(which, who, ..)`: a process only
    // (not a process group or a user's every process), and only itself.
    for (nr, process) in [
        (libc::SYS_setpriority, libc::PRIO_PROCESS as u64),
        (libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS),
    ] {
        rules.insert(nr, vec![when(vec![ne(0, process)?])?, when(not_own(1)?)?]);
    }
    rules.insert(libc::SYS_clone, clone_rules()?);
    rules.insert(libc::SYS_socket, socket_rules(network)?);
    // A pair of connected sockets reaches nothing outside the host; only Unix ones
    // (the kernel makes no other family's pairs today: this keeps it so).
    rules.insert(
        libc::SYS_socketpair,
        vec![when(vec![ne(0, libc::AF_UNIX as u64)?])?],
    );
    Ok(rules)
}

/// The condition "32-bit argument `index` is not `value`".
fn ne(index: u8, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value)
        .map_err(|e| format!("seccomp: {e}"))
}

/// The rule that matches when all of `conditions` hold.
fn when(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| format!("seccomp: {e}"))
}

/// The `clone` calls refused: one with any of the [`NAMESPACE_FLAGS`], and one that
/// is not a thread.
fn clone_rules() -> Result<Vec<SeccompRule>, String> {
    let fail = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut clone_rules = Vec::new();
    for &flag in NAMESPACE_FLAGS {
        let flag = flag as u64;
        clone_rules.push(
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(fail)?])
            .map_err(fail)?,
        );
    }
    // A clone that is not a thread is a fork (the C library's fork() is one): refused,
    // so that a host is only ever the one process the daemon started.
    clone_rules.push(
        SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )
        .map_err(fail)?])
        .map_err(fail)?,
    );
    Ok(clone_rules)
}

/// The `socket` calls refused (EPERM). Without `sandbox.network`: every one (a host
/// talks to the daemon over the descriptors it was started with and never needs a new
/// socket, so it cannot reach the daemon's socket, a database or the network). With
/// it: only TCP and UDP over IPv4 and IPv6, and Unix sockets; never raw or packet
/// sockets, nor any other family (a filter on the family is a deny-by-default list:
/// what is not named is refused). Not netlink either: glibc's getaddrinfo asks a
/// routing netlink socket which families the machine has (`AI_ADDRCONFIG`) and, refused
/// one, answers as if it had both, which costs a client at most a refused IPv6 connect
/// (`resolve:` in the tests' `faults` fixture resolves and connects with it refused).
fn socket_rules(network: bool) -> Result<Vec<SeccompRule>, String> {
    let fail = |e: seccompiler::BackendError| format!("seccomp: {e}");
    if !network {
        return Ok(vec![]);
    }
    let arg = |index: u8, op: SeccompCmpOp, value: libc::c_int| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value as u64).map_err(fail)
    };
    // SOCK_NONBLOCK and SOCK_CLOEXEC ride in the type's high bits.
    const TYPE_MASK: u64 = 0xf;
    let mut rules = vec![
        // Any family but these three.
        SeccompRule::new(vec![
            arg(0, SeccompCmpOp::Ne, libc::AF_UNIX)?,
            arg(0, SeccompCmpOp::Ne, libc::AF_INET)?,
            arg(0, SeccompCmpOp::Ne, libc::AF_INET6)?,
        ])
        .map_err(fail)?,
    ];
    // IPv4 and IPv6: stream and datagram only (no SOCK_RAW, no SOCK_PACKET, nor any
    // other type): every type value but those two is named, as a filter cannot negate a
    // masked comparison.
    for family in [libc::AF_INET, libc::AF_INET6] {
        for kind in 0..=TYPE_MASK as libc::c_int {
            if kind == libc::SOCK_STREAM || kind == libc::SOCK_DGRAM {
                continue;
            }
            rules.push(
                SeccompRule::new(vec![
                    arg(0, SeccompCmpOp::Eq, family)?,
                    arg(1, SeccompCmpOp::MaskedEq(TYPE_MASK), kind)?,
                ])
                .map_err(fail)?,
            );
        }
    }
    Ok(rules)
}

/// The newest system call this filter was written against: `mseal` (462, Linux 6.10;
/// numbered alike on every architecture since Linux 5.1).
const NEWEST_KNOWN: u32 = 462;

/// A filter for the system calls no list above names: those newer than
/// [`NEWEST_KNOWN`] answer ENOSYS, as on a kernel without them (what the C library
/// and Rust's standard library fall back from), so that a kernel update adds no
/// attack surface to a host until this filter has been reviewed for it (io_uring was
/// once such a newcomer); on x86_64, every x32 system call (numbers with bit 30 set)
/// answers EPERM: the x32 ABI reaches the same kernel entry points under other
/// numbers, which a filter written with x86_64 numbers would let through.
fn unknown_refused() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JGT_K: u16 = 0x25;
    const BPF_RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let mut program = vec![
        // The system call number (seccomp_data.nr, offset 0).
        op(BPF_LD_W_ABS, 0, 0, 0),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        const BPF_JGE_K: u16 = 0x35;
        const X32_BIT: u32 = 0x4000_0000;
        // To the EPERM at the end, three instructions on.
        program.push(op(BPF_JGE_K, 3, 0, X32_BIT));
    }
    program.extend([
        op(BPF_JGT_K, 0, 1, NEWEST_KNOWN),
        op(BPF_RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
        op(BPF_RET_K, 0, 0, RET_ALLOW),
    ]);
    #[cfg(target_arch = "x86_64")]
    program.push(op(BPF_RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    program
}

/// The paths of an instance's `sandbox` table, resolved against `base_dir`.
pub(crate) fn resolve(paths: &[PathBuf], base_dir: &Path) -> Vec<PathBuf> {
    paths.iter().map(|p| base_dir.join(p)).collect()
}
