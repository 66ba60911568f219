//! A virtio console on QEMU virt's virtio-mmio transport (legacy interface, virtio 1.x spec
//! section 4.2.4 "Legacy interface"; console device: section 5.3): the fast harness channel.
//! The PL011 moves one byte per QEMU main-loop turn and host syscall; virtio moves whole
//! buffers. Port 0 only (no VIRTIO_CONSOLE_F_MULTIPORT): queue 0 receives, queue 1 transmits.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// QEMU virt: 32 virtio-mmio transports of 0x200 bytes from 0x0a00_0000, SPI 16 + n.
const MMIO_BASE: usize = 0x0a00_0000;
const MMIO_STRIDE: usize = 0x200;
const MMIO_COUNT: usize = 32;
const DEVICE_CONSOLE: u32 = 3;

const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const GUEST_FEATURES: usize = 0x020;
const GUEST_FEATURES_SEL: usize = 0x024;
const GUEST_PAGE_SIZE: usize = 0x028;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_ALIGN: usize = 0x03c;
const QUEUE_PFN: usize = 0x040;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;

const QSIZE: usize = 16;
const RX_BUF: usize = 4096;
const TX_BUF: usize = 64 * 1024;
const DESC_F_WRITE: u16 = 2;

/// A used-ring element: descriptor id and bytes written.
#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// A legacy split virtqueue: descriptors and the available ring in the first page, the used
/// ring in the second (QueueAlign = 4096).
#[repr(C, align(4096))]
struct Vring {
    desc: [Desc; QSIZE],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; QSIZE],
    _pad: [u8; 4096 - QSIZE * 16 - 4 - QSIZE * 2],
    used_flags: u16,
    used_idx: u16,
    used_ring: [UsedElem; QSIZE],
    _tail: [u8; 4096 - 4 - QSIZE * 8],
}

#[repr(C, align(4096))]
struct Buffers {
    rx: [[u8; RX_BUF]; QSIZE],
    tx: [u8; TX_BUF],
}

const ZERO_DESC: Desc = Desc { addr: 0, len: 0, flags: 0, next: 0 };
const ZERO_RING: Vring = Vring {
    desc: [ZERO_DESC; QSIZE],
    avail_flags: 0,
    avail_idx: 0,
    avail_ring: [0; QSIZE],
    _pad: [0; 4096 - QSIZE * 16 - 4 - QSIZE * 2],
    used_flags: 0,
    used_idx: 0,
    used_ring: [UsedElem { id: 0, len: 0 }; QSIZE],
    _tail: [0; 4096 - 4 - QSIZE * 8],
};

static mut RINGS: [Vring; 2] = [ZERO_RING, ZERO_RING];
static mut BUFS: Buffers = Buffers { rx: [[0; RX_BUF]; QSIZE], tx: [0; TX_BUF] };

/// The console, once found and set up.
pub struct Console {
    base: usize,
    pub intid: u32,
    rx_last_used: u16,
    rx_avail: u16,
    /// The receive buffer being consumed: (descriptor id, length, position).
    cur: Option<(u16, usize, usize)>,
    tx_avail: u16,
}

fn rd(addr: usize) -> u32 {
    // SAFETY: virtio-mmio registers of QEMU virt, mapped Device by `mmu::enable`.
    unsafe { read_volatile(addr as *const u32) }
}
fn wr(addr: usize, v: u32) {
    // SAFETY: as in `rd`; the refhyp is the only driver of this transport.
    unsafe { write_volatile(addr as *mut u32, v) }
}

fn rings() -> *mut [Vring; 2] {
    &raw mut RINGS
}
fn bufs() -> *mut Buffers {
    &raw mut BUFS
}

impl Console {
    /// Find a virtio console and bring it up; None when QEMU was started without one.
    pub fn probe() -> Option<Console> {
        let base = (0..MMIO_COUNT)
            .map(|i| MMIO_BASE + i * MMIO_STRIDE)
            .find(|&b| rd(b + MAGIC) == 0x7472_6976 && rd(b + VERSION) == 1 && rd(b + DEVICE_ID) == DEVICE_CONSOLE)?;
        let slot = (base - MMIO_BASE) / MMIO_STRIDE;
        wr(base + STATUS, 0);
        wr(base + STATUS, 1); // ACKNOWLEDGE
        wr(base + STATUS, 1 | 2); // DRIVER
        wr(base + GUEST_FEATURES_SEL, 0);
        wr(base + GUEST_FEATURES, 0);
        wr(base + GUEST_PAGE_SIZE, 4096);
        let r = rings();
        for q in 0..2u32 {
            wr(base + QUEUE_SEL, q);
            if (rd(base + QUEUE_NUM_MAX) as usize) < QSIZE {
                return None;
            }
            wr(base + QUEUE_NUM, QSIZE as u32);
            wr(base + QUEUE_ALIGN, 4096);
            // SAFETY: RINGS is only touched by the single Console (boot is single-threaded).
            let addr = unsafe { &raw mut (*r)[q as usize] } as usize;
            wr(base + QUEUE_PFN, (addr >> 12) as u32);
        }
        let mut c = Console { base, intid: 32 + 16 + slot as u32, rx_last_used: 0, rx_avail: 0, cur: None, tx_avail: 0 };
        for id in 0..QSIZE as u16 {
            c.post_rx(id);
        }
        wr(base + STATUS, 1 | 2 | 4); // DRIVER_OK
        wr(base + QUEUE_NOTIFY, 0);
        Some(c)
    }

    fn post_rx(&mut self, id: u16) {
        let (r, b) = (rings(), bufs());
        // SAFETY: the receive ring and buffers belong to this Console; the device only
        // writes buffers we posted and the used ring, which we read with volatile accesses.
        unsafe {
            let ring = &mut (*r)[0];
            ring.desc[id as usize] = Desc { addr: (&raw const (*b).rx[id as usize]) as u64, len: RX_BUF as u32, flags: DESC_F_WRITE, next: 0 };
            ring.avail_ring[self.rx_avail as usize % QSIZE] = id;
            fence(Ordering::SeqCst);
            self.rx_avail = self.rx_avail.wrapping_add(1);
            write_volatile(&raw mut ring.avail_idx, self.rx_avail);
        }
        fence(Ordering::SeqCst);
    }

    fn used_idx(q: usize) -> u16 {
        let r = rings();
        // SAFETY: volatile read of the device-written used index.
        unsafe { read_volatile(&raw const (*r)[q].used_idx) }
    }

    /// The next received byte, if one is there.
    pub fn try_getc(&mut self) -> Option<u8> {
        loop {
            if let Some((id, len, pos)) = self.cur {
                if pos < len {
                    let b = bufs();
                    // SAFETY: the device finished writing buffer `id` (it is in the used ring).
                    let byte = unsafe { (*b).rx[id as usize][pos] };
                    self.cur = Some((id, len, pos + 1));
                    return Some(byte);
                }
                self.cur = None;
                self.post_rx(id);
                wr(self.base + QUEUE_NOTIFY, 0);
            }
            if Self::used_idx(0) == self.rx_last_used {
                return None;
            }
            fence(Ordering::SeqCst);
            let r = rings();
            // SAFETY: the used element at rx_last_used was published by the device.
            let UsedElem { id, len } = unsafe { read_volatile(&raw const (*r)[0].used_ring[self.rx_last_used as usize % QSIZE]) };
            self.rx_last_used = self.rx_last_used.wrapping_add(1);
            self.cur = Some((id as u16, (len as usize).min(RX_BUF), 0));
        }
    }

    /// Acknowledge the transport's interrupt (the line is level-triggered).
    pub fn ack_interrupt(&mut self) {
        let s = rd(self.base + INTERRUPT_STATUS);
        if s != 0 {
            wr(self.base + INTERRUPT_ACK, s);
        }
    }

    pub fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = bytes.len().min(TX_BUF);
            let (r, b) = (rings(), bufs());
            // SAFETY: the transmit buffer is free (the previous chunk was consumed: we wait for
            // it below), and the transmit ring belongs to this Console.
            unsafe {
                (&mut (*b).tx)[..n].copy_from_slice(&bytes[..n]);
                let ring = &mut (*r)[1];
                ring.desc[0] = Desc { addr: (&raw const (*b).tx) as u64, len: n as u32, flags: 0, next: 0 };
                ring.avail_ring[self.tx_avail as usize % QSIZE] = 0;
                fence(Ordering::SeqCst);
                self.tx_avail = self.tx_avail.wrapping_add(1);
                write_volatile(&raw mut ring.avail_idx, self.tx_avail);
            }
            fence(Ordering::SeqCst);
            wr(self.base + QUEUE_NOTIFY, 1);
            while Self::used_idx(1) != self.tx_avail {
                core::hint::spin_loop();
            }
            self.ack_interrupt();
            bytes = &bytes[n..];
        }
    }
}
