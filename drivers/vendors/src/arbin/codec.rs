//! Arbin MITS Pro CTI frames: little-endian binary messages on TCP, each beginning with the token
//! `0x11DDDDDDDDDDDDDD`, its length (u32), command code (u32) and extended command code (u32),
//! fields at fixed byte offsets, and a 16-bit checksum (the sum of the message's bytes). Layouts
//! follow pycti-arbin's `messages.py`, which was written against frames captured from a real
//! cycler.
//!
//! Requests are sent byte for byte as pycti-arbin sends them: each of its client frames carries
//! its last fields (or reserved bytes) beyond the length it announces (a login announces 74 bytes
//! and is 84 long, a start 160 and 170), and the servers it was written against read them so.
//!
//! Servers disagree on whether the length counts the checksum: pycti-arbin's `ArbinSpoofer` sends
//! its checksum *after* the length it announces. The reader takes the announced length as the
//! frame, accepts two bytes after it that are the frame's checksum, and otherwise resynchronises
//! on the next token, reporting the bytes it skipped (garbage, a truncated frame) as a protocol
//! error naming their offset in the stream. Decoding never panics: a field beyond the frame's end
//! is an error naming the field.

use crate::link::{Answer, Framing};
use crate::vendor::VendorState;

/// CTI's default port.
pub const DEFAULT_PORT: u16 = 9031;
/// The token that starts every frame.
pub const TOKEN: u64 = 0x11DD_DDDD_DDDD_DDDD;
/// The longest frame labloop accepts (a login reply is 8 678 bytes; channel info grows with
/// auxiliary readings).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
const HEADER_BYTES: usize = 20;

/// Login (`CTI_REQUEST_LOGIN`).
pub const LOGIN: u32 = 0xEEAB_0001;
/// Its reply.
pub const LOGIN_REPLY: u32 = 0xEEBA_0001;
/// Channel info (`CTI_REQUEST_GET_CHANNELS_INFO`).
pub const CHANNEL_INFO: u32 = 0xEEAB_0003;
/// Its reply.
pub const CHANNEL_INFO_REPLY: u32 = 0xEEBA_0003;
/// Assign a schedule (with its test capacity and user variables).
pub const ASSIGN_SCHEDULE: u32 = 0xBB21_0001;
/// Its reply.
pub const ASSIGN_SCHEDULE_REPLY: u32 = 0xBB12_0001;
/// Start the assigned schedule.
pub const START_SCHEDULE: u32 = 0xBB32_0004;
/// Its reply.
pub const START_SCHEDULE_REPLY: u32 = 0xBB23_0004;
/// Stop a channel.
pub const STOP_SCHEDULE: u32 = 0xBB31_0001;
/// Its reply.
pub const STOP_SCHEDULE_REPLY: u32 = 0xBB13_0001;

/// A frame being written.
struct Builder(Vec<u8>);

impl Builder {
    /// A frame of `size` bytes whose length field says `announced`.
    fn announcing(code: u32, announced: usize, size: usize) -> Self {
        let mut bytes = vec![0u8; size];
        bytes[0..8].copy_from_slice(&TOKEN.to_le_bytes());
        bytes[8..12].copy_from_slice(&(announced as u32).to_le_bytes());
        bytes[12..16].copy_from_slice(&code.to_le_bytes());
        Self(bytes)
    }

    fn put(mut self, at: usize, value: &[u8]) -> Self {
        self.0[at..at + value.len()].copy_from_slice(value);
        self
    }

    /// A fixed-width text field, cut to fit and padded with zeros.
    fn text(self, at: usize, width: usize, value: &str) -> Self {
        let bytes: Vec<u8> = value.bytes().take(width).collect();
        self.put(at, &bytes)
    }

    /// A fixed-width UTF-16LE text field (CTI's `wchar_t` names: schedule, barcode, test
    /// name), cut to fit on a character boundary and padded with zeros.
    fn wide_text(self, at: usize, width: usize, value: &str) -> Self {
        let bytes: Vec<u8> = value
            .encode_utf16()
            .take(width / 2)
            .flat_map(u16::to_le_bytes)
            .collect();
        self.put(at, &bytes)
    }

    /// The frame with its checksum after it, as pycti-arbin's client sends it.
    fn finish(mut self) -> Vec<u8> {
        let sum = checksum(&self.0);
        self.0.extend_from_slice(&sum.to_le_bytes());
        self.0
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |sum, &b| sum.wrapping_add(u16::from(b)))
}

/// Login with a user name and password.
pub fn login(username: &str, password: &str) -> Vec<u8> {
    Builder::announcing(LOGIN, 74, 84)
        .text(20, 32, username)
        .text(52, 32, password)
        .finish()
}

/// The status and readings of one channel (0-based).
pub fn channel_info(channel: u16) -> Vec<u8> {
    Builder::announcing(CHANNEL_INFO, 50, 60)
        .put(20, &channel.to_le_bytes())
        .put(22, &1i16.to_le_bytes())
        .finish()
}

/// Assigns `schedule` to a channel with the test's capacity, the cell's barcode and user
/// variables 1–16 (`None`: left at 0).
pub fn assign_schedule(
    channel: u32,
    schedule: &str,
    capacity_ah: f32,
    barcode: &str,
    variables: &[Option<f32>; 16],
) -> Vec<u8> {
    let mut frame = Builder::announcing(ASSIGN_SCHEDULE, 659, 669)
        .put(20, &channel.to_le_bytes())
        .wide_text(25, 400, schedule)
        .put(425, &capacity_ah.to_le_bytes())
        .wide_text(429, 144, barcode);
    for (k, value) in variables.iter().enumerate() {
        frame = frame.put(573 + 4 * k, &value.unwrap_or(0.0).to_le_bytes());
    }
    frame.finish()
}

/// Starts the channel's assigned schedule as the test `test_name`.
pub fn start_schedule(channel: u16, test_name: &str) -> Vec<u8> {
    Builder::announcing(START_SCHEDULE, 160, 170)
        .wide_text(20, 144, test_name)
        .put(164, &1u32.to_le_bytes())
        .put(168, &channel.to_le_bytes())
        .finish()
}

/// Stops the channel's test.
pub fn stop_schedule(channel: u32) -> Vec<u8> {
    Builder::announcing(STOP_SCHEDULE, 116, 126)
        .put(20, &channel.to_le_bytes())
        .finish()
}

/// One frame read.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Its command code.
    pub code: u32,
    /// Where it began in the stream.
    pub offset: u64,
    bytes: Vec<u8>,
}

impl Frame {
    fn field<const N: usize>(&self, at: usize, name: &str) -> Result<[u8; N], String> {
        self.bytes
            .get(at..at + N)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "frame at byte offset {}: field `{name}` (bytes {at}..{}) beyond its {} bytes",
                    self.offset,
                    at + N,
                    self.bytes.len()
                )
            })
    }

    /// A little-endian u32 field.
    pub fn u32(&self, at: usize, name: &str) -> Result<u32, String> {
        self.field::<4>(at, name).map(u32::from_le_bytes)
    }

    /// A little-endian i16 field.
    pub fn i16(&self, at: usize, name: &str) -> Result<i16, String> {
        self.field::<2>(at, name).map(i16::from_le_bytes)
    }

    /// A byte.
    pub fn u8(&self, at: usize, name: &str) -> Result<u8, String> {
        self.field::<1>(at, name).map(|b| b[0])
    }

    /// A little-endian f32 field.
    pub fn f32(&self, at: usize, name: &str) -> Result<f32, String> {
        self.field::<4>(at, name).map(f32::from_le_bytes)
    }

    /// A little-endian f64 field.
    pub fn f64(&self, at: usize, name: &str) -> Result<f64, String> {
        self.field::<8>(at, name).map(f64::from_le_bytes)
    }

    /// A fixed-width text field, up to its first zero.
    pub fn text(&self, at: usize, width: usize, name: &str) -> Result<String, String> {
        let bytes = self.bytes.get(at..at + width).ok_or_else(|| {
            format!(
                "frame at byte offset {}: field `{name}` beyond its {} bytes",
                self.offset,
                self.bytes.len()
            )
        })?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(width);
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

/// Cuts the byte stream into frames.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    consumed: u64,
    /// The checksum of the last frame, which may follow it.
    trailing: Option<u16>,
}

impl Framer {
    fn drain(&mut self, n: usize) -> Vec<u8> {
        self.consumed += n as u64;
        self.buffer.drain(..n).collect()
    }
}

impl Framing for Framer {
    type Message = Frame;

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn pending(&self) -> usize {
        self.buffer.len()
    }

    fn next_message(&mut self) -> Option<Result<Frame, String>> {
        let token = TOKEN.to_le_bytes();
        let Some(start) = self.buffer.windows(8).position(|w| w == token) else {
            // Keep what could be the start of a token; anything longer is not a frame.
            if self.buffer.len() > MAX_FRAME_BYTES {
                let offset = self.consumed;
                let n = self.buffer.len() - 7;
                self.drain(n);
                return Some(Err(format!(
                    "byte offset {offset}: {n} bytes without a frame token"
                )));
            }
            return None;
        };
        if start > 0 {
            let offset = self.consumed;
            let skipped = self.drain(start);
            let trailing = self.trailing.take();
            let is_checksum =
                skipped.len() == 2 && trailing.is_some_and(|sum| sum.to_le_bytes() == skipped[..]);
            if !is_checksum {
                return Some(Err(format!(
                    "byte offset {offset}: {} bytes that are not a frame ({})",
                    skipped.len(),
                    hex(&skipped)
                )));
            }
        }
        if self.buffer.len() < 12 {
            return None;
        }
        let length = u32::from_le_bytes(self.buffer[8..12].try_into().expect("4 bytes")) as usize;
        if !(HEADER_BYTES..=MAX_FRAME_BYTES).contains(&length) {
            let offset = self.consumed;
            self.drain(8);
            return Some(Err(format!(
                "byte offset {offset}: a frame announcing {length} bytes"
            )));
        }
        // A frame cut short: the next token arrives before its announced end.
        if let Some(next) = self.buffer[8..]
            .windows(8)
            .position(|w| w == token)
            .map(|p| p + 8)
            .filter(|&p| p < length)
        {
            let offset = self.consumed;
            self.drain(next);
            return Some(Err(format!(
                "byte offset {offset}: a frame cut short after {next} of its {length} bytes"
            )));
        }
        if self.buffer.len() < length {
            return None;
        }
        let offset = self.consumed;
        let bytes = self.drain(length);
        let code = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        self.trailing = Some(checksum(&bytes));
        // A frame whose length counts its checksum ends in it.
        if bytes.len() >= HEADER_BYTES + 2 {
            let (body, last) = bytes.split_at(bytes.len() - 2);
            if checksum(body).to_le_bytes() == last {
                self.trailing = None;
            }
        }
        // The spoofer's trailing checksum, when it has already arrived.
        if let (Some(sum), Some(next)) = (self.trailing, self.buffer.get(..2))
            && next == sum.to_le_bytes()
        {
            self.drain(2);
            self.trailing = None;
        }
        Some(Ok(Frame {
            code,
            offset,
            bytes,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if bytes.len() > 16 {
        out.push_str(" …");
    }
    out
}

/// The reply to a request whose reply code is `code`, or what is wrong with it.
pub fn expect(frame: &Frame, code: u32) -> Result<(), String> {
    if frame.code != code {
        return Err(format!(
            "expected a reply {code:#010x}, got a frame {:#010x} at byte offset {}",
            frame.code, frame.offset
        ));
    }
    Ok(())
}

/// A command's result byte (offset 24): 0 is success, others are the vendor's codes.
pub fn result(frame: &Frame, code: u32, channel: u32) -> Result<Answer<()>, String> {
    expect(frame, code)?;
    let replied = frame.u32(20, "channel")?;
    if replied != channel {
        return Err(format!(
            "asked about channel {channel} (0-based), got a reply about channel {replied}"
        ));
    }
    Ok(match frame.u8(24, "result")? {
        0 => Answer::Reply(()),
        other => Answer::Refused(feedback(code, other)),
    })
}

/// The vendor's words for a result code.
fn feedback(code: u32, result: u8) -> String {
    let text = match (code, result) {
        (ASSIGN_SCHEDULE_REPLY, 16) | (START_SCHEDULE_REPLY, 16) | (STOP_SCHEDULE_REPLY, 16) => {
            "channel does not exist"
        }
        (ASSIGN_SCHEDULE_REPLY, 19) => "schedule name not found",
        (ASSIGN_SCHEDULE_REPLY, 20) | (START_SCHEDULE_REPLY, 18) => "channel is running or unsafe",
        (START_SCHEDULE_REPLY, 21) => "no schedule assigned to channel",
        (START_SCHEDULE_REPLY, 35) => "test name cannot be empty",
        (START_SCHEDULE_REPLY, 38) => "schedule safety precheck failed",
        _ => "see the CTI feedback codes",
    };
    format!("code {result}: {text}")
}

/// A login reply: accepted (`success` or `already logged in`), else refused.
pub fn login_result(frame: &Frame) -> Result<Answer<()>, String> {
    expect(frame, LOGIN_REPLY)?;
    Ok(match frame.u32(20, "result")? {
        1 | 3 => Answer::Reply(()),
        2 => Answer::Refused("wrong user name or password".into()),
        other => Answer::Refused(format!("login result {other}")),
    })
}

/// One channel's info.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelInfo {
    /// The channel (0-based).
    pub channel: u32,
    /// Its state code ([`state`]).
    pub status: i16,
    /// Whether MITS has lost contact with the channel's hardware.
    pub comm_failure: bool,
    /// Test time (s).
    pub test_time_s: f64,
    /// Step time (s).
    pub step_time_s: f64,
    /// Voltage (V).
    pub voltage_v: f32,
    /// Current (A), negative while discharging.
    pub current_a: f32,
    /// Charge capacity counter (Ah).
    pub charge_capacity_ah: f32,
    /// Discharge capacity counter (Ah).
    pub discharge_capacity_ah: f32,
    /// Charge energy counter (Wh).
    pub charge_energy_wh: f32,
    /// Discharge energy counter (Wh).
    pub discharge_energy_wh: f32,
    /// Internal resistance (Ω).
    pub internal_resistance_ohm: f32,
}

/// Decodes a channel-info reply about `channel`.
pub fn channel_info_reply(frame: &Frame, channel: u32) -> Result<Answer<ChannelInfo>, String> {
    expect(frame, CHANNEL_INFO_REPLY)?;
    let info = ChannelInfo {
        channel: frame.u32(24, "channel")?,
        status: frame.i16(28, "status")?,
        comm_failure: frame.u8(30, "comm_failure")? != 0,
        test_time_s: frame.f64(1685, "test_time")?,
        step_time_s: frame.f64(1693, "step_time")?,
        voltage_v: frame.f32(1701, "voltage")?,
        current_a: frame.f32(1705, "current")?,
        charge_capacity_ah: frame.f32(1713, "charge_capacity")?,
        discharge_capacity_ah: frame.f32(1717, "discharge_capacity")?,
        charge_energy_wh: frame.f32(1721, "charge_energy")?,
        discharge_energy_wh: frame.f32(1725, "discharge_energy")?,
        internal_resistance_ohm: frame.f32(1729, "internal_resistance")?,
    };
    if info.channel != channel {
        return Err(format!(
            "asked about channel {channel} (0-based), got a reply about channel {}",
            info.channel
        ));
    }
    Ok(Answer::Reply(info))
}

/// The cycler's serial number and channel count from a login reply.
pub fn login_identity(frame: &Frame) -> Result<(String, u32), String> {
    Ok((
        frame.text(28, 16, "cycler_sn")?,
        frame.u32(8664, "num_channels")?,
    ))
}

/// A CTI channel status in the adapter's words; `None` for a code CTI does not define.
pub fn state(status: i16) -> Option<VendorState> {
    let faulted = |what: &str| VendorState::Faulted(format!("the channel reports {what}"));
    Some(match status {
        0 | 19 | 20 => VendorState::Idle,
        1..=7 | 9..=13 | 16..=18 | 21..=28 | 30 => VendorState::Running,
        15 => VendorState::Completed,
        8 => faulted("Unsafe (a safety limit; see the schedule's safety settings)"),
        14 => faulted("Error"),
        29 => faulted("DAQ Memory Unsafe"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u32, length: usize, fill: &[(usize, &[u8])]) -> Vec<u8> {
        let mut frame = Builder::announcing(code, length, length);
        for (at, bytes) in fill {
            frame = frame.put(*at, bytes);
        }
        frame.finish()
    }

    #[test]
    fn frames_with_a_trailing_checksum_or_a_counted_one_both_read() {
        let mut framer = Framer::default();
        let spoofer_style = reply(STOP_SCHEDULE_REPLY, 128, &[(20, &3u32.to_le_bytes())]);
        // A server whose length counts the checksum.
        let mut counted =
            Builder::announcing(STOP_SCHEDULE_REPLY, 130, 130).put(20, &3u32.to_le_bytes());
        let sum = checksum(&counted.0[..128]);
        counted.0[128..130].copy_from_slice(&sum.to_le_bytes());
        let (a, b) = spoofer_style.split_at(100);
        framer.push(a);
        assert!(framer.next_message().is_none());
        framer.push(b);
        framer.push(&counted.0);
        for _ in 0..2 {
            let frame = framer.next_message().expect("a frame").expect("whole");
            assert_eq!(
                result(&frame, STOP_SCHEDULE_REPLY, 3),
                Ok(Answer::Reply(()))
            );
        }
        assert!(framer.next_message().is_none());
    }

    #[test]
    fn garbage_and_cut_frames_are_named_and_the_reader_resynchronises() {
        let mut framer = Framer::default();
        let good = reply(STOP_SCHEDULE_REPLY, 128, &[(20, &1u32.to_le_bytes())]);
        framer.push(b"\x01\x02junk");
        framer.push(&good[..60]);
        framer.push(&good);
        let junk = framer.next_message().unwrap().unwrap_err();
        assert!(junk.starts_with("byte offset 0: 6 bytes"), "{junk}");
        let cut = framer.next_message().unwrap().unwrap_err();
        assert!(cut.contains("cut short after 60 of its 128"), "{cut}");
        let frame = framer.next_message().unwrap().unwrap();
        assert_eq!(frame.offset, 66);
        assert_eq!(
            result(&frame, STOP_SCHEDULE_REPLY, 1),
            Ok(Answer::Reply(()))
        );
        // A short channel-info reply names the missing field instead of panicking.
        let short = reply(CHANNEL_INFO_REPLY, 100, &[]);
        framer.push(&short);
        let frame = framer.next_message().unwrap().unwrap();
        let missing = channel_info_reply(&frame, 0).unwrap_err();
        assert!(missing.contains("test_time"), "{missing}");
        assert!(result(&frame, STOP_SCHEDULE_REPLY, 0).is_err());
        assert_eq!(state(99), None);
    }

    #[test]
    fn requests_have_the_layouts_pycti_arbin_reads() {
        let vars = {
            let mut v = [None; 16];
            v[0] = Some(4.8);
            v[6] = Some(100.0);
            v
        };
        let assign = assign_schedule(2, "LABLOOP-CLO.sdx", 1.1, "cell-7", &vars);
        assert_eq!(assign.len(), 671);
        assert_eq!(&assign[0..8], &TOKEN.to_le_bytes());
        assert_eq!(u32::from_le_bytes(assign[8..12].try_into().unwrap()), 659);
        let wide: Vec<u8> = "LABLOOP-CLO.sdx"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(&assign[25..25 + wide.len()], &wide[..]);
        assert_eq!(
            f32::from_le_bytes(assign[573..577].try_into().unwrap()),
            4.8
        );
        assert_eq!(
            f32::from_le_bytes(assign[597..601].try_into().unwrap()),
            100.0
        );
        let sum = checksum(&assign[..669]);
        assert_eq!(&assign[669..], &sum.to_le_bytes());
        assert_eq!(start_schedule(3, "t").len(), 172);
        assert_eq!(login("u", "p").len(), 86);
    }
}
