//! Neware BTS 8's XML messages: each a `<bts version="1.0">` document ended by `\n\n#\r\n`, the
//! operation in `<cmd>`, channels addressed by their `devtype`/`devid`/`subdevid`/`chlid`. Replies
//! are read with quick-xml; one that is not well formed, not the reply to the request, or lacks an
//! attribute labloop reads is an error naming it (and the reply's byte offset in the stream).
//! Layouts follow the responses captured from a real BTS 8 in aurora-neware's tests.
//!
//! [`step_file`] writes the step file a test runs: labloop's protocol as Neware steps (currents
//! in mA, voltages in 0.1 mV, times in ms, capacities in mA·s).

use crate::link::{Answer, Framing};
use crate::vendor::VendorState;
use labloop_drivers::CyclingTest;
use quick_xml::events::Event;

/// BTS's default port.
pub const DEFAULT_PORT: u16 = 502;
/// What ends every message.
pub const TERMINATOR: &[u8] = b"\n\n#\r\n";
/// The longest reply labloop waits for the end of.
pub const MAX_MESSAGE_BYTES: usize = 1 << 22;

/// A request: `body` inside the `<bts>` document, terminated.
pub fn message(body: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><bts version=\"1.0\">{body}</bts>{}",
        String::from_utf8_lossy(TERMINATOR)
    )
    .into_bytes()
}

/// XML-escapes an attribute or text value.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// One channel of the BTS, as `getdevinfo` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The middle machine's address.
    pub ip: String,
    /// Device type.
    pub devtype: String,
    /// Device id.
    pub devid: String,
    /// Sub-device id.
    pub subdevid: String,
    /// Channel id.
    pub chlid: String,
}

impl Pipeline {
    /// The channel's address attributes, as every per-channel request carries them.
    pub fn attributes(&self) -> String {
        format!(
            "ip=\"{}\" devtype=\"{}\" devid=\"{}\" subdevid=\"{}\" chlid=\"{}\"",
            escape(&self.ip),
            escape(&self.devtype),
            escape(&self.devid),
            escape(&self.subdevid),
            escape(&self.chlid)
        )
    }

    /// `devid-subdevid-chlid`, Neware's name for the channel.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.devid, self.subdevid, self.chlid)
    }
}

/// One element of a reply's list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Item {
    /// Its tag.
    pub name: String,
    /// Its attributes in order.
    pub attributes: Vec<(String, String)>,
    /// Its text.
    pub text: String,
}

impl Item {
    /// An attribute's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("<{}> has no `{name}`", self.name))
    }

    fn number(&self, name: &str) -> Result<f64, String> {
        let text = self.need(name)?;
        match text {
            "--" | "" => Ok(0.0),
            _ => text
                .parse()
                .map_err(|_| format!("<{}> {name}=\"{text}\" is not a number", self.name)),
        }
    }
}

/// A reply: its command, its `<result>` and the elements of its list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// Where it began in the stream.
    pub offset: u64,
    /// Its `<cmd>`.
    pub cmd: String,
    /// Its `<result>`, where it has one.
    pub result: Option<String>,
    /// The elements inside its `<list>` or `<middle>`.
    pub items: Vec<Item>,
}

/// Reads one reply document.
pub fn parse(xml: &str, offset: u64) -> Result<Reply, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut reply = Reply {
        offset,
        ..Reply::default()
    };
    // The open elements' names; items are the elements two below <bts> (in <list>, <middle>).
    let mut path: Vec<String> = Vec::new();
    let mut open_item: Option<Item> = None;
    loop {
        let at = offset + reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("byte offset {at}: not XML ({e})"))?;
        let located = |m: String| format!("byte offset {at}: {m}");
        match event {
            Event::Empty(e) if path.len() == 2 => reply.items.push(item(&e).map_err(located)?),
            Event::Start(e) => {
                if path.len() == 2 {
                    open_item = Some(item(&e).map_err(located)?);
                }
                path.push(e.name().as_ref().to_owned());
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                let text = text.trim();
                match (path.len(), path.last().map(String::as_str)) {
                    (2, Some("cmd")) => reply.cmd = text.to_owned(),
                    (2, Some("result")) => reply.result = Some(text.to_owned()),
                    (3, _) => {
                        if let Some(item) = open_item.as_mut() {
                            item.text.push_str(text);
                        }
                    }
                    _ => {}
                }
            }
            Event::End(_) => {
                if path.len() == 3
                    && let Some(item) = open_item.take()
                {
                    reply.items.push(item);
                }
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = path.last() {
        return Err(format!(
            "byte offset {offset}: the reply ends inside <{open}>"
        ));
    }
    if reply.cmd.is_empty() {
        return Err(format!("byte offset {offset}: a reply without <cmd>"));
    }
    Ok(reply)
}

/// An element's name and attributes.
fn item(e: &quick_xml::events::BytesStart) -> Result<Item, String> {
    let attributes = e
        .attributes()
        .map(|a| {
            let a = a.map_err(|e| format!("bad attribute ({e})"))?;
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute value ({e})"))?;
            Ok((a.key.as_ref().to_owned(), value.into_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Item {
        name: e.name().as_ref().to_owned(),
        attributes,
        text: String::new(),
    })
}

/// Cuts the stream into reply documents.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    consumed: u64,
}

impl Framing for Framer {
    type Message = Reply;

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn pending(&self) -> usize {
        self.buffer.len()
    }

    fn next_message(&mut self) -> Option<Result<Reply, String>> {
        let Some(end) = self
            .buffer
            .windows(TERMINATOR.len())
            .position(|w| w == TERMINATOR)
        else {
            if self.buffer.len() > MAX_MESSAGE_BYTES {
                let offset = self.consumed;
                self.consumed += self.buffer.len() as u64;
                self.buffer.clear();
                return Some(Err(format!(
                    "byte offset {offset}: no end of message within {MAX_MESSAGE_BYTES} bytes"
                )));
            }
            return None;
        };
        let offset = self.consumed;
        let frame: Vec<u8> = self.buffer.drain(..end + TERMINATOR.len()).collect();
        self.consumed += frame.len() as u64;
        Some(match std::str::from_utf8(&frame[..end]) {
            Ok(text) => parse(text, offset),
            Err(e) => Err(format!("byte offset {offset}: not UTF-8 ({e})")),
        })
    }
}

/// The reply to `cmd` (its `<cmd>` must be `<cmd>_resp`).
pub fn expect(reply: &Reply, cmd: &str) -> Result<(), String> {
    let wanted = format!("{cmd}_resp");
    if !reply.cmd.eq_ignore_ascii_case(&wanted) {
        return Err(format!(
            "asked `{cmd}`, got a `{}` reply (byte offset {})",
            reply.cmd, reply.offset
        ));
    }
    Ok(())
}

/// The `connect` reply: accepted when its result is `ok`.
pub fn connected(reply: &Reply) -> Result<Answer<()>, String> {
    expect(reply, "connect")?;
    Ok(match reply.result.as_deref() {
        Some(r) if r.eq_ignore_ascii_case("ok") => Answer::Reply(()),
        other => Answer::Refused(format!("connect: {}", other.unwrap_or("no result"))),
    })
}

/// The channels a `getdevinfo` reply lists, in order.
pub fn pipelines(reply: &Reply) -> Result<Answer<Vec<Pipeline>>, String> {
    expect(reply, "getdevinfo")?;
    let mut out = Vec::new();
    for item in reply.items.iter().filter(|i| i.name == "channel") {
        out.push(Pipeline {
            ip: item.need("ip")?.to_owned(),
            devtype: item.need("devtype")?.to_owned(),
            devid: item.need("devid")?.to_owned(),
            subdevid: item.need("subdevid")?.to_owned(),
            chlid: item.need("Channelid")?.to_owned(),
        });
    }
    Ok(Answer::Reply(out))
}

/// Whether a `start` or `stop` reply says `ok` for the channel.
pub fn done(reply: &Reply, cmd: &str, pipeline: &Pipeline) -> Result<Answer<()>, String> {
    expect(reply, cmd)?;
    let item = reply
        .items
        .iter()
        .find(|i| i.get("chlid") == Some(pipeline.chlid.as_str()))
        .or(reply.items.first())
        .ok_or_else(|| format!("a `{cmd}` reply naming no channel"))?;
    Ok(if item.text.eq_ignore_ascii_case("ok") {
        Answer::Reply(())
    } else {
        Answer::Refused(format!("{cmd} on {}: {}", pipeline.id(), item.text))
    })
}

/// One channel's `inquire` reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Inquiry {
    /// The channel's `workstatus`.
    pub workstatus: String,
    /// Cycle (from 1).
    pub cycle: i64,
    /// Step (from 1; 0 where none).
    pub step: i64,
    /// Current (A), negative while discharging.
    pub current_a: f64,
    /// Voltage (V).
    pub voltage_v: f64,
    /// The step's capacity so far (Ah).
    pub capacity_ah: f64,
    /// The step's energy so far (Wh).
    pub energy_wh: f64,
    /// Test time (s).
    pub total_time_s: f64,
    /// Step time (s).
    pub step_time_s: f64,
}

/// Decodes an `inquire` reply about one channel.
pub fn inquiry(reply: &Reply) -> Result<Answer<Inquiry>, String> {
    expect(reply, "inquire")?;
    let item = reply
        .items
        .iter()
        .find(|i| i.name == "inquire")
        .ok_or_else(|| "an `inquire` reply without an <inquire> element".to_owned())?;
    Ok(Answer::Reply(Inquiry {
        workstatus: item.need("workstatus")?.to_owned(),
        cycle: item.number("cycle_id")? as i64,
        step: item
            .get("step_id")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        current_a: item.number("current")?,
        voltage_v: item.number("voltage")?,
        capacity_ah: item.number("capacity")?,
        energy_wh: item.number("energy")?,
        total_time_s: item.number("totaltime")?,
        step_time_s: item.number("relativetime")?,
    }))
}

/// A channel's `workstatus` in the adapter's words; `None` for one labloop does not know.
pub fn state(workstatus: &str) -> Option<VendorState> {
    Some(match workstatus.to_ascii_lowercase().as_str() {
        "working" | "start" | "pause" | "wait" | "waiting" => VendorState::Running,
        "finish" => VendorState::Completed,
        "stop" => VendorState::Idle,
        "protect" => VendorState::Faulted(
            "the channel reports protect (a protection limit of the step file)".into(),
        ),
        _ => return None,
    })
}

/// The step file for `test` on a cell of `capacity_ah`: a minute's rest, the protocol's
/// constant-current steps (each for the time its SOC window takes at its rate), the CC-CV
/// finish to full (CV until C/20), the discharge to `min_voltage_v`, looped for the test's
/// cycles, with the instrument's voltage and current limits as its protection.
pub fn step_file(
    test: &CyclingTest,
    capacity_ah: f64,
    min_voltage_v: f64,
    max_voltage_v: f64,
    max_current_a: Option<f64>,
) -> String {
    let cap_mah = capacity_ah * 1000.0;
    let mut steps: Vec<String> = Vec::new();
    let step = |steps: &mut Vec<String>, kind: u32, main: String| {
        let n = steps.len() + 1;
        steps.push(format!(
            "<Step{n} Step_ID=\"{n}\" Step_Type=\"{kind}\"><Limit><Main>{main}</Main></Limit></Step{n}>"
        ));
    };
    step(&mut steps, 4, "<Time Value=\"60000\" />".into());
    let first_charge = steps.len() + 1;
    let current = |rate: f64| {
        format!(
            "<Rate Value=\"{rate:.4}\" /><Curr Value=\"{:.4}\" />",
            rate * cap_mah
        )
    };
    for s in &test.protocol.steps {
        step(
            &mut steps,
            1,
            format!(
                "{}<Time Value=\"{:.0}\" />",
                current(s.c_rate),
                s.duration_s() * 1000.0
            ),
        );
    }
    let finish = test.protocol.finish;
    let cv = finish.cv_voltage_v * 10_000.0;
    step(
        &mut steps,
        1,
        format!("{}<Stop_Volt Value=\"{cv:.0}\" />", current(finish.c_rate)),
    );
    step(
        &mut steps,
        3,
        format!(
            "<Volt Value=\"{cv:.0}\" />{}<Stop_Curr Value=\"{:.4}\" />",
            current(finish.c_rate),
            cap_mah / 20.0
        ),
    );
    step(
        &mut steps,
        2,
        format!(
            "{}<Stop_Volt Value=\"{:.0}\" />",
            current(test.discharge_c_rate),
            min_voltage_v * 10_000.0
        ),
    );
    let n = steps.len() + 1;
    steps.push(format!(
        "<Step{n} Step_ID=\"{n}\" Step_Type=\"5\"><Limit><Other><Start_Step Value=\"{first_charge}\" /><Cycle_Count Value=\"{}\" /></Other></Limit></Step{n}>",
        test.cycles
    ));
    let n = steps.len() + 1;
    steps.push(format!("<Step{n} Step_ID=\"{n}\" Step_Type=\"6\" />"));
    let current_limit = max_current_a
        .map(|a| format!("<Curr><Upper Value=\"{:.4}\" /></Curr>", a * 1000.0))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root><config type=\"Step File\" version=\"17\">\
<Head_Info><Operate Value=\"66\" /><Scale Value=\"1\" /><Start_Step Value=\"1\" Hide_Ctrl_Step=\"0\" />\
<Creator Value=\"labloop\" /><Remark Value=\"{}\" /><RateType Value=\"103\" /><MultCap Value=\"{:.4}\" /></Head_Info>\
<Whole_Prt><Protect><Main><Volt><Upper Value=\"{:.0}\" /><Lower Value=\"{:.0}\" /></Volt>{current_limit}</Main></Protect>\
<Record><Main><Time Value=\"1000\" /></Main></Record></Whole_Prt>\
<Step_Info Num=\"{}\">{}</Step_Info><SMBUS><SMBUS_Info Num=\"0\" AdjacentInterval=\"0\" /></SMBUS></config></root>\n",
        escape(&format!("{} {}", test.key, test.cell_id)),
        cap_mah * 3600.0,
        max_voltage_v * 10_000.0,
        (min_voltage_v - 0.1).max(0.0) * 10_000.0,
        steps.len(),
        steps.join("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INQUIRE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<bts version=\"1.0\">\r\n  <cmd>inquire_resp</cmd>\r\n  <list count=\"1\">\r\n    <inquire dev=\"27-21-1-2-0\" cycle_id=\"44\" step_id=\"4\" step_type=\"dc\" workstatus=\"working\" barcode=\"c2\" current=\"-0.0003\" voltage=\"4.6947\" capacity=\"0.001\" energy=\"0.0047\" totaltime=\"3189199.3\" relativetime=\"12319\" open_or_close=\"0\" log_code=\"102000\" />\r\n  </list>\r\n</bts>";

    #[test]
    fn a_captured_inquire_reply_reads() {
        let mut framer = Framer::default();
        let (a, b) = INQUIRE.as_bytes().split_at(50);
        framer.push(a);
        assert!(framer.next_message().is_none());
        framer.push(b);
        framer.push(TERMINATOR);
        let reply = framer.next_message().unwrap().unwrap();
        let Answer::Reply(inquiry) = inquiry(&reply).unwrap() else {
            panic!("refused")
        };
        assert_eq!((inquiry.cycle, inquiry.step), (44, 4));
        assert_eq!(inquiry.current_a, -0.0003);
        assert_eq!(inquiry.step_time_s, 12319.0);
        assert_eq!(state(&inquiry.workstatus), Some(VendorState::Running));
    }

    #[test]
    fn captured_device_info_and_start_replies_read() {
        let devinfo = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<bts version=\"1.0\">\r\n  <cmd>getdevinfo_resp</cmd>\r\n  <serverip count=\"1\">\r\n    <server ip=\"127.0.0.1\" port=\"3306\" />\r\n  </serverip>\r\n  <middle count=\"2\">\r\n    <channel ip=\"127.0.0.1\" devtype=\"27\" devid=\"21\" subdevid=\"1\" Channelid=\"1\">true</channel>\r\n    <channel ip=\"127.0.0.1\" devtype=\"27\" devid=\"21\" subdevid=\"1\" Channelid=\"2\">false</channel>\r\n</middle>\r\n</bts>";
        let reply = parse(devinfo, 0).unwrap();
        let Answer::Reply(pipes) = pipelines(&reply).unwrap() else {
            panic!()
        };
        assert_eq!(pipes.len(), 2);
        assert_eq!(pipes[1].id(), "21-1-2");
        let start = "<?xml version=\"1.0\"?><bts version=\"1.0\"><cmd>start_resp</cmd><list count=\"1\"><start ip=\"127.0.0.1\" devtype=\"27\" devid=\"21\" subdevid=\"1\" chlid=\"2\">false</start></list></bts>";
        let reply = parse(start, 0).unwrap();
        assert!(matches!(
            done(&reply, "start", &pipes[1]),
            Ok(Answer::Refused(_))
        ));
        assert!(done(&reply, "stop", &pipes[1]).is_err());
    }

    #[test]
    fn garbage_and_cut_replies_are_named() {
        let mut framer = Framer::default();
        framer.push(b"\x00\xff not xml <<\n\n#\r\n");
        framer.push(&INQUIRE.as_bytes()[..120]);
        framer.push(TERMINATOR);
        let garbage = framer.next_message().unwrap().unwrap_err();
        assert!(garbage.contains("byte offset 0"), "{garbage}");
        let cut = framer.next_message().unwrap().unwrap_err();
        // Named where it broke: past the garbage's 20 bytes, inside the cut reply.
        assert!(cut.contains("byte offset 130"), "{cut}");
        let missing = parse(
            "<bts><cmd>inquire_resp</cmd><list><inquire cycle_id=\"1\" /></list></bts>",
            0,
        )
        .unwrap();
        let error = inquiry(&missing).unwrap_err();
        assert!(error.contains("workstatus"), "{error}");
    }
}
