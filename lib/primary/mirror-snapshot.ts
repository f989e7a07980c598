import { AbstractSnapshot } from 'abstract-level'

// abstract-level's types leave out the constructor a subclass calls
const Snapshot = AbstractSnapshot as unknown as new (options: object) => AbstractSnapshot

/** An explicit snapshot of a MirrorLevel: a snapshot of the inner db, closed with it. */
export class MirrorSnapshot extends Snapshot {
  readonly inner: AbstractSnapshot

  constructor (options: object, inner: AbstractSnapshot) {
    super(options)
    this.inner = inner
  }

  async _close (): Promise<void> {
    await this.inner.close()
  }
}
