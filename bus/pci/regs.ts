/**
 * PCI configuration space layout, as the PCI Local Bus and PCI Express Base specifications define it
 * (the kernel's include/uapi/linux/pci_regs.h). Offsets are bytes into a function's 4 KiB space.
 */

export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

// Type 0/1 common header
export const PCI_VENDOR_ID = 0x00; // 16 bits
export const PCI_DEVICE_ID = 0x02; // 16 bits
export const PCI_COMMAND = 0x04; // 16 bits
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_STATUS = 0x06; // 16 bits, mostly RW1C
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_CLASS_REVISION = 0x08; // [31:8] class code, [7:0] revision
export const PCI_HEADER_TYPE = 0x0e; // 8 bits
export const PCI_HEADER_TYPE_MASK = 0x7f;
export const PCI_HEADER_TYPE_MFD = 0x80;
export const PCI_HEADER_TYPE_NORMAL = 0;
export const PCI_HEADER_TYPE_BRIDGE = 1;
export const PCI_CAPABILITY_LIST = 0x34; // 8 bits
/** Capabilities live above the standard header. */
export const PCI_STD_HEADER_SIZEOF = 0x40;

// Type 1 (bridge) bus numbers: one dword holds primary, secondary, subordinate, sec. latency.
export const PCI_PRIMARY_BUS = 0x18;
export const PCI_SECONDARY_BUS = 0x19;
export const PCI_SUBORDINATE_BUS = 0x1a;

// Capability list
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
/** The kernel's PCI_FIND_CAP_TTL: a bound on list walks over broken hardware. */
export const PCI_FIND_CAP_TTL = 48;

// Extended capabilities: a dword header [15:0] ID, [19:16] version, [31:20] next offset.
export const PCI_EXT_CAP_START = 0x100;
export const PCI_EXT_CAP_ID_ATS = 0x000f;
export const PCI_EXT_CAP_ID_PRI = 0x0013;
export const PCI_EXT_CAP_ID_PASID = 0x001b;
export const pciExtCapId = (header: number): number => header & 0xffff;
export const pciExtCapNext = (header: number): number => (header >>> 20) & 0xffc;

// Address Translation Services
export const PCI_ATS_CAP = 0x04; // 16 bits
export const PCI_ATS_CAP_QDEP_MASK = 0x1f; // Invalidate Queue Depth, 0 means 32
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x0020;
export const PCI_ATS_MAX_QDEP = 32;
export const PCI_ATS_CTRL = 0x06; // 16 bits
export const PCI_ATS_CTRL_ENABLE = 0x8000;
export const PCI_ATS_CTRL_STU_MASK = 0x1f; // Smallest Translation Unit, log2(size) - 12
export const PCI_ATS_MIN_STU = 12;

// Page Request Interface
export const PCI_PRI_CTRL = 0x04; // 16 bits
export const PCI_PRI_CTRL_ENABLE = 0x0001;
export const PCI_PRI_CTRL_RESET = 0x0002;
export const PCI_PRI_STATUS = 0x06; // 16 bits; RF and UPRGI are RW1C
export const PCI_PRI_STATUS_RF = 0x0001;
export const PCI_PRI_STATUS_UPRGI = 0x0002;
export const PCI_PRI_STATUS_STOPPED = 0x0100;
export const PCI_PRI_STATUS_PASID = 0x8000; // PRG Response PASID Required
export const PCI_PRI_MAX_REQ = 0x08; // 32 bits, outstanding page request capacity
export const PCI_PRI_ALLOC_REQ = 0x0c; // 32 bits, outstanding page request allocation

// Process Address Space ID
export const PCI_PASID_CAP = 0x04; // 16 bits
export const PCI_PASID_CAP_EXEC = 0x0002;
export const PCI_PASID_CAP_PRIV = 0x0004;
export const PCI_PASID_CAP_WIDTH_SHIFT = 8;
export const PCI_PASID_CAP_WIDTH_MASK = 0x1f00; // Max PASID Width
export const PCI_PASID_CTRL = 0x06; // 16 bits
export const PCI_PASID_CTRL_ENABLE = 0x0001;
export const PCI_PASID_CTRL_EXEC = 0x0002;
export const PCI_PASID_CTRL_PRIV = 0x0004;

// ECAM: each function's 4 KiB of configuration space at bus << 20 | device << 15 | function << 12.
export const PCIE_ECAM_BUS_SHIFT = 20;
export const PCIE_ECAM_DEVFN_SHIFT = 12;
export const pcieEcamOffset = (busRel: number, devfn: number, where: number): number =>
  busRel * (1 << PCIE_ECAM_BUS_SHIFT) + (devfn << PCIE_ECAM_DEVFN_SHIFT) + where;

/** / PCI_SLOT() / PCI_FUNC() */
// kernel: PCI_DEVFN() [pci.h]
export const pciDevfn = (slot: number, fn: number): number => ((slot & 0x1f) << 3) | (fn & 7);
export const pciSlot = (devfn: number): number => (devfn >> 3) & 0x1f;
export const pciFunc = (devfn: number): number => devfn & 7;
