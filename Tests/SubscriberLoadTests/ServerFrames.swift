/// A server frame (unmasked), as the bridge writes one: any length, final unless `fin` is false.
func serverFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
    var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
    switch payload.count {
    case 0..<126: bytes.append(UInt8(payload.count))
    case 126...0xFFFF: bytes += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    default:
        bytes.append(127)
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: payload.count >> shift)) }
    }
    return bytes + payload
}

/// A text frame of `json`.
func serverText(_ json: String) -> [UInt8] { serverFrame(0x1, Array(json.utf8)) }
