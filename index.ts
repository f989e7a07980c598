export { MirrorLevel, type MirrorLevelOptions, type MirrorHead, type Origin } from './lib/mirror-level'
export { MirrorError, codes, type MirrorErrorCode } from './lib/errors'
export { RESERVED_RANGE } from './lib/keyspace'
export { BlockDevice, type BlockDeviceOptions } from './lib/block-device'
