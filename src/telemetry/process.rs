//! The standard `process_*` metrics, read from /proc at scrape time. The prometheus crate's
//! own process collector counts CPU in whole seconds, which makes a CPU panel move in
//! one-second steps; this one reports fractions.

use std::fs;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

pub struct ProcessCollector {
    cpu_seconds: Counter,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time_seconds: Gauge,
    descs: Vec<Desc>,
    ticks_per_second: f64,
    page_size: f64,
    boot_time_seconds: f64,
}

impl ProcessCollector {
    pub fn new() -> prometheus::Result<Self> {
        let cpu_seconds = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help));
        let resident_bytes = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let virtual_bytes = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let start_time_seconds = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        let descs = [
            cpu_seconds.desc(),
            resident_bytes.desc(),
            virtual_bytes.desc(),
            open_fds.desc(),
            max_fds.desc(),
            start_time_seconds.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Ok(Self {
            cpu_seconds,
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            start_time_seconds,
            descs,
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            boot_time_seconds: boot_time().unwrap_or(0.0),
        })
    }

    fn update(&self) {
        if let Some(stat) = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| ProcStat::parse(&s))
        {
            let cpu = (stat.utime + stat.stime) as f64 / self.ticks_per_second;
            let seen = self.cpu_seconds.get();
            if cpu > seen {
                self.cpu_seconds.inc_by(cpu - seen);
            }
            self.resident_bytes
                .set(stat.rss_pages as f64 * self.page_size);
            self.virtual_bytes.set(stat.vsize as f64);
            self.start_time_seconds
                .set(self.boot_time_seconds + stat.starttime as f64 / self.ticks_per_second);
        }
        if let Ok(entries) = fs::read_dir("/proc/self/fd") {
            self.open_fds.set(entries.count() as f64);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds.set(limit.rlim_cur as f64);
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        [
            self.cpu_seconds.collect(),
            self.resident_bytes.collect(),
            self.virtual_bytes.collect(),
            self.open_fds.collect(),
            self.max_fds.collect(),
            self.start_time_seconds.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The fields of /proc/self/stat this collector reads.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl ProcStat {
    /// Fields are counted after the command name, which sits in parentheses and may itself
    /// contain spaces and parentheses.
    fn parse(stat: &str) -> Option<Self> {
        let after_comm = &stat[stat.rfind(')')? + 1..];
        // After the name: state is field 3 of stat(5), so field N is index N - 3 here.
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn boot_time() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 \
                    12345 1048576 300 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                utime: 250,
                stime: 31,
                starttime: 12345,
                vsize: 1048576,
                rss_pages: 300,
            })
        );
    }

    #[test]
    fn reports_fractional_cpu_and_this_process() {
        let c = ProcessCollector::new().unwrap();
        // Burn a little CPU so the counter is not zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let families = c.collect();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map(|f| {
                    let m = &f.get_metric()[0];
                    if f.get_field_type() == prometheus::proto::MetricType::COUNTER {
                        m.get_counter().get_value()
                    } else {
                        m.get_gauge().get_value()
                    }
                })
                .unwrap()
        };
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_start_time_seconds") > 1_600_000_000.0);
    }
}
