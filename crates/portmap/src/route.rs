//! The default IPv4 gateway from the text of `/proc/net/route` (per network namespace).
//!
//! Each line after the header is `Iface Destination Gateway Flags ...`, addresses in
//! hexadecimal, in the host's byte order (little-endian on the machines we run on). The
//! default route has destination `00000000` and the gateway flag (`0x2`). Lines that do not
//! parse are skipped; at most [`MAX_LINES`] are read.

use std::net::Ipv4Addr;

/// Most lines looked at.
pub const MAX_LINES: usize = 4096;

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The gateway of the first default route that is up, if any.
pub fn default_gateway(text: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).take(MAX_LINES).find_map(|line| {
        let mut f = line.split_whitespace();
        let _iface = f.next()?;
        let dest = hex32(f.next()?)?;
        let gw = hex32(f.next()?)?;
        let flags = u32::from_str_radix(f.next()?, 16).ok()?;
        (dest == 0 && gw != 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY)
            .then(|| Ipv4Addr::from(gw.to_le_bytes()))
    })
}

/// An address field: exactly 8 hexadecimal digits.
fn hex32(field: &str) -> Option<u32> {
    (field.len() == 8 && field.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(field, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn finds_the_default_route() {
        let t = format!(
            "{HEADER}v0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             v0\t00000000\t01004D0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_gateway(&t), Some(Ipv4Addr::new(10, 77, 0, 1)));
    }

    #[test]
    fn none_without_a_default_route_and_no_panic_on_junk() {
        let t = format!("{HEADER}v0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(default_gateway(&t), None);
        // A default route that is down, or not via a gateway.
        let t = format!("{HEADER}v0\t00000000\t01004D0A\t0002\n");
        assert_eq!(default_gateway(&t), None);
        for junk in [
            "",
            "\n\n",
            "x\ny z\n",
            "h\ne 00000000 zz 3\n",
            "h\n\u{0}\u{ff}",
            // Short or signed fields are not addresses.
            "h\nv0 0 05 3\n",
            "h\nv0 00000000 +1004D0A 3\n",
        ] {
            assert_eq!(default_gateway(junk), None);
        }
    }
}
