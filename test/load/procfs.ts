import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * What the benchmark reads from /proc (Linux only): CPU time and memory of a process, which process listens
 * on a port, and which processes are connected to it (to tell whether anything else used the shared Redis
 * or RabbitMQ during a measurement).
 */

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** utime + stime of a process, in seconds; undefined if it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return undefined;
  }
}

/** Read and write system calls a process made so far (/proc/<pid>/io syscr + syscw); undefined if it is gone. */
export function syscallsOf(pid: number): number | undefined {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    return field('syscr') + field('syscw');
  } catch {
    return undefined;
  }
}

/**
 * Times the main thread gave up the CPU to wait (/proc/<pid>/status voluntary_ctxt_switches): for an event
 * loop, about the times it went to sleep in epoll and was woken again. Undefined if the process is gone.
 */
export function wakeupsOf(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  } catch {
    return undefined;
  }
}

export interface Memory {
  /** Resident set size now, KiB. */
  rssKb: number;
  /** Peak resident set size over the process's life, KiB. */
  hwmKb: number;
}

export function memoryOf(pid: number): Memory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
  } catch {
    return undefined;
  }
}

export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Soft limit of open files of a process ('self' for this one). */
export function maxOpenFiles(pid: number | 'self'): number | undefined {
  try {
    const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

interface TcpRow {
  localPort: number;
  remotePort: number;
  state: string;
  inode: string;
}

function tcpRows(): TcpRow[] {
  const rows: TcpRow[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      rows.push({
        localPort: parseInt(f[1].split(':')[1], 16),
        remotePort: parseInt(f[2].split(':')[1], 16),
        state: f[3],
        inode: f[9],
      });
    }
  }
  return rows;
}

/** pid owning each of the given socket inodes (needs permission to read other processes' fds: root). */
function ownersOf(inodes: ReadonlySet<string>): Map<string, number> {
  const owners = new Map<string, number>();
  if (inodes.size === 0) return owners;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1])) owners.set(m[1], Number(entry));
    }
    if (owners.size === inodes.size) break;
  }
  return owners;
}

const TCP_LISTEN = '0A';
const TCP_ESTABLISHED = '01';

/** The process that listens on a TCP port, if this user may see it. */
export function listeningPid(port: number): number | undefined {
  const inodes = new Set(tcpRows().filter((r) => r.state === TCP_LISTEN && r.localPort === port && r.inode !== '0').map((r) => r.inode));
  return [...ownersOf(inodes).values()][0];
}

/** Processes with an established connection to a local TCP port, with how many connections each. */
export function clientsOf(port: number): Map<number, number> {
  const inodes = new Set(tcpRows().filter((r) => r.state === TCP_ESTABLISHED && r.remotePort === port && r.inode !== '0').map((r) => r.inode));
  const counts = new Map<number, number>();
  for (const pid of ownersOf(inodes).values()) counts.set(pid, (counts.get(pid) ?? 0) + 1);
  return counts;
}
