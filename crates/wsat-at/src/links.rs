//! The link slot table (FIRMWARE.md §3): per id an optional open link (`client[L]`), an optional pending
//! configuration (`config[L]`), the master AT+WSDATAFMT setting and a generation counter.

use crate::output::DataFormat;
use crate::types::{LinkConfig, LinkHandle, LinkStatus};

/// A link whose handle exists (any connection state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenLink {
    /// Handle given to the glue in the Open action.
    pub handle: LinkHandle,
    /// URI as given to AT+WSOPEN (after unescaping), listed verbatim by AT+WSOPEN?.
    pub uri: Vec<u8>,
    /// Mirror of the library's state.
    pub status: LinkStatus,
}

/// One link id's slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    /// `client[L]`.
    pub link: Option<OpenLink>,
    /// `config[L]` (AT+WSCFG or defaults created by AT+WSOPEN).
    pub config: Option<LinkConfig>,
    /// AT+WSDATAFMT (master); survives clean(L), reset by AT+RST.
    pub format: DataFormat,
    /// Last generation handed out for this id; never reset, so stale events stay stale.
    generation: u64,
}

/// All slots.
#[derive(Debug, Clone)]
pub(crate) struct Links {
    slots: Vec<Slot>,
}

impl Links {
    /// `count` empty slots.
    pub fn new(count: usize) -> Self {
        Links {
            slots: vec![Slot::default(); count],
        }
    }

    /// Number of slots (valid ids are `0..len`).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Slot `id`, if it exists.
    pub fn get(&self, id: usize) -> Option<&Slot> {
        self.slots.get(id)
    }

    /// Mutable slot `id`, if it exists.
    pub fn get_mut(&mut self, id: usize) -> Option<&mut Slot> {
        self.slots.get_mut(id)
    }

    /// All slots in id order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots.iter().enumerate()
    }

    /// The open link `handle` still names (same id and generation), if any.
    pub fn live_mut(&mut self, handle: LinkHandle) -> Option<&mut OpenLink> {
        self.slots
            .get_mut(handle.id)?
            .link
            .as_mut()
            .filter(|l| l.handle == handle)
    }

    /// True if `handle` names the link currently in its slot.
    pub fn is_live(&self, handle: LinkHandle) -> bool {
        self.slots
            .get(handle.id)
            .and_then(|s| s.link.as_ref())
            .is_some_and(|l| l.handle == handle)
    }

    /// A fresh handle for a new open of `id` (generation + 1).
    pub fn next_handle(&mut self, id: usize) -> Option<LinkHandle> {
        let slot = self.slots.get_mut(id)?;
        slot.generation += 1;
        Some(LinkHandle {
            id,
            generation: slot.generation,
        })
    }

    /// `clean(L)`: forget the link and free its config (the data format stays).
    pub fn clean(&mut self, id: usize) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.link = None;
            slot.config = None;
        }
    }

    /// AT+RST: everything but the generation counters goes back to defaults.
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            *slot = Slot {
                generation: slot.generation,
                ..Slot::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_survive_clean_and_reset() {
        let mut links = Links::new(3);
        let h1 = links.next_handle(1).expect("slot 1");
        assert_eq!(h1.generation, 1);
        links.reset();
        let h2 = links.next_handle(1).expect("slot 1");
        assert_eq!(h2.generation, 2);
        assert!(links.next_handle(3).is_none());
    }

    #[test]
    fn clean_frees_link_and_config_but_not_format() {
        let mut links = Links::new(3);
        let h = links.next_handle(0).expect("slot 0");
        let slot = links.get_mut(0).expect("slot 0");
        slot.link = Some(OpenLink {
            handle: h,
            uri: b"ws://h".to_vec(),
            status: LinkStatus::Connecting,
        });
        slot.config = Some(LinkConfig::default());
        slot.format.level = 2;
        assert!(links.is_live(h));
        links.clean(0);
        assert!(!links.is_live(h));
        let slot = links.get(0).expect("slot 0");
        assert!(slot.config.is_none());
        assert_eq!(slot.format.level, 2);
    }
}
