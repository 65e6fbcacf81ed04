//! The engine's command-visible state (echo, syslog, Wi-Fi/SNTP settings, headers, links) and
//! the output/action queues handlers write to. Also the getter wrappers that print the core's
//! `ERR CODE:0x0108NNNN` lines.

use std::collections::VecDeque;

use crate::links::Links;
use crate::output;
use crate::params::{para_err_code, GetError, Got, Params};
use crate::types::{Action, EngineConfig, Firmware, Pki};

/// SNTP settings from AT+CIPSNTPCFG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sntp {
    /// `<enable>`.
    pub enabled: bool,
    /// `<timezone>` as given (hour or ±HHMM form).
    pub timezone: i32,
    /// Server names as given.
    pub servers: Vec<Vec<u8>>,
    /// A `+TIME_UPDATED` is owed at the next sync completion.
    pub awaiting_sync: bool,
}

/// State visible to command handlers.
#[derive(Debug)]
pub(crate) struct State {
    /// Behaviour switch.
    pub firmware: Firmware,
    /// Certificates for WSCFG.
    pub pki: Pki,
    /// wsat version for AT+GMR.
    pub version: String,
    /// ATE1 (default) / ATE0.
    pub echo: bool,
    /// AT+SYSLOG.
    pub syslog: bool,
    /// AT+SYSMSG value (stored, no effect).
    pub sysmsg: i32,
    /// AT+CWMODE value (default 1, station); kept across AT+RST like the firmware's NVS copy.
    pub cwmode: i32,
    /// SSID of the last successful AT+CWJAP.
    pub wifi_ssid: Option<Vec<u8>>,
    /// The access point is reachable (default); a fault turns it off. Survives AT+RST: a
    /// reboot does not bring the network back.
    pub wifi_up: bool,
    /// AT+CIPSNTPCFG.
    pub sntp: Sntp,
    /// AT+WSHEAD list, newest first, as raw (key, value).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Link slots.
    pub links: Links,
    /// Pending output pieces.
    pub out: VecDeque<Vec<u8>>,
    /// Pending actions.
    pub actions: VecDeque<Action>,
}

impl State {
    /// Fresh power-on state.
    pub fn new(config: EngineConfig) -> Self {
        State {
            firmware: config.firmware,
            pki: config.pki,
            version: config.version,
            echo: true,
            syslog: false,
            sysmsg: 0,
            cwmode: 1,
            wifi_ssid: None,
            wifi_up: true,
            sntp: Sntp::default(),
            headers: Vec::new(),
            links: Links::new(config.links),
            out: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// AT+RST: RAM state back to power-on defaults (CWMODE and SYSMSG live in NVS and stay).
    pub fn reset(&mut self) {
        self.echo = true;
        self.syslog = false;
        self.wifi_ssid = None;
        self.sntp = Sntp::default();
        self.headers.clear();
        self.links.reset();
        self.actions.clear();
    }

    /// True in master mode (FIRMWARE.md §9).
    pub fn master(&self) -> bool {
        self.firmware == Firmware::Master
    }

    /// Queues one output piece (one write on the port).
    pub fn emit(&mut self, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        if !bytes.is_empty() {
            self.out.push_back(bytes);
        }
    }

    /// Prints `ERR CODE:` if AT+SYSLOG=1.
    pub fn err_code(&mut self, code: u32) {
        if self.syslog {
            self.emit(output::err_code(code));
        }
    }

    /// Integer getter with the core's ERR CODE side effect.
    pub fn int(&mut self, params: &Params, index: usize) -> Got<i32> {
        self.got(params.int(index), index)
    }

    /// String getter with the core's ERR CODE side effect.
    pub fn string(&mut self, params: &Params, index: usize) -> Got<Vec<u8>> {
        self.got(params.string(index), index)
    }

    fn got<T>(&mut self, result: Result<Option<T>, GetError>, index: usize) -> Got<T> {
        match result {
            Ok(Some(v)) => Got::Ok(v),
            Ok(None) => Got::Omitted,
            Err(GetError::Overflow) => Got::Fail,
            Err(GetError::Parse) => {
                self.err_code(para_err_code(index));
                Got::Fail
            }
        }
    }

    /// Integer that must be present and within `range` (compared as i64, so negatives fail
    /// the firmware's unsigned compares too).
    pub fn int_in(&mut self, params: &Params, index: usize, range: std::ops::RangeInclusive<i64>) -> Option<i32> {
        match self.int(params, index) {
            Got::Ok(v) if range.contains(&i64::from(v)) => Some(v),
            _ => None,
        }
    }

    /// `<link_id>`: present and `0..links`.
    pub fn link_id(&mut self, params: &Params, index: usize) -> Option<usize> {
        let max = self.links.len() as i64 - 1;
        self.int_in(params, index, 0..=max).map(|v| v as usize)
    }
}
