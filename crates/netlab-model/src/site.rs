//! How many indices a machine has, by the size of its site's block.

use crate::Error;

/// A site's block size, which fixes how many experiment indices each machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteBlock {
    /// 26, 28 or 29 from [`SiteBlock::parse`]; [`SiteBlock::capacity`] is `None` for any other.
    pub prefix_len: u8,
}

impl Default for SiteBlock {
    /// The M-Lab layout: a /26 per site, four machines of 12 indices each.
    fn default() -> Self {
        SiteBlock { prefix_len: 26 }
    }
}

impl SiteBlock {
    /// Reads `/26`, `26` or `4.14.159.64/26`.
    pub fn parse(text: &str) -> Result<SiteBlock, Error> {
        let len = text.rsplit('/').next().unwrap_or(text);
        let prefix_len: u8 = len
            .trim()
            .parse()
            .map_err(|_| Error::SiteBlock(text.to_owned()))?;
        let block = SiteBlock { prefix_len };
        block
            .capacity()
            .map(|_| block)
            .ok_or_else(|| Error::SiteBlock(text.to_owned()))
    }

    /// Indices per machine: a /26 holds four machines at +9, +22, +35, +48, each followed by 12 experiments;
    /// single-machine /28 and /29 sites have the machine at +3 and room for 11 and 3.
    pub fn capacity(self) -> Option<u64> {
        match self.prefix_len {
            26 => Some(12),
            28 => Some(11),
            29 => Some(3),
            _ => None,
        }
    }

    /// How the layout reads in a message.
    pub fn describe(self) -> String {
        let cap = self.capacity().unwrap_or(0);
        if self.prefix_len == 26 {
            format!(
                "the M-Lab layout of {cap} indices per machine on a /26 (--site-block to change)"
            )
        } else {
            format!("{cap} indices per machine on a /{}", self.prefix_len)
        }
    }
}
