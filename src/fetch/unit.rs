//! Running one unit of a fetch request: a whole object, a probe (a key of unknown size), or
//! one ranged part, through the transfer engine into memory, within its turn and budget.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::budget::BudgetPermit;
use super::error::{FetchError, FetchErrorKind};
use super::request::{PartData, Request, Slot, Turn, Unit, UnitKind};
use super::{FetchKey, Object};
use crate::engine::dest::MemoryDest;
use crate::engine::response::Asked;
use crate::engine::tail::{self, Helpers};
use crate::engine::verify::Verifier;
use crate::engine::{self, Condition, Context, Expect, Fetched, Source, Span};
use crate::progress::Progress;

impl Request {
    /// Runs one unit to completion (or failure), posting its result. A panic inside it
    /// fails the unit's item (or part), passes its turn on, and leaves the worker alive.
    pub(crate) fn run(self: &Arc<Self>, unit: Unit) {
        let (item, part, parts) = (unit.item, unit.part, unit.kind.parts());
        let key = Arc::clone(&unit.key);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            crate::http::transport::with_cancel(&self.cancel.clone(), || self.run_unit(unit));
        }));
        if let Err(panic) = ran {
            let message = crate::downloader::jogger::panic_message(&*panic);
            let error = self.error(&key, None, FetchErrorKind::Panicked(message));
            self.recover_turn(item, part, parts);
            if part == 0 {
                self.abandon_item(item);
                self.post_item(item, Slot::Done(Err(error)));
            } else {
                self.post_part(item, part, Err(error));
            }
        }
    }

    /// After a unit's panic: the turn must not stay with it (everything after would wait
    /// for ever). If its turn has not come, it waits for it; if it holds it, it passes it.
    fn recover_turn(&self, item: u64, part: u64, parts: u64) {
        let mine = Turn { item, part };
        let mut turn = self.turn.lock();
        while *turn < mine && !self.cancel.is_cancelled() {
            self.turn_cv.wait(&mut turn);
        }
        if *turn == mine {
            drop(turn);
            self.advance(item, part, parts);
        }
    }

    fn run_unit(self: &Arc<Self>, unit: Unit) {
        match &unit.kind {
            UnitKind::Whole { size: Some(size) } => self.run_whole(&unit, *size),
            UnitKind::Whole { size: None } => self.run_probe(&unit),
            UnitKind::Part {
                start,
                end,
                total,
                parts,
            } => self.run_part(&unit, *start, *end, *total, *parts),
            UnitKind::Failed(_) => {
                let Unit { item, kind, .. } = unit;
                if let UnitKind::Failed(error) = kind
                    && self.wait_turn(item, 0).is_ok()
                {
                    self.advance(item, 0, 1);
                    self.post_item(item, Slot::Done(Err(*error)));
                }
            }
        }
    }

    fn context<'a>(
        &'a self,
        progress: &'a Progress,
        flow: Option<&'a crate::flow::Permit>,
    ) -> Context<'a> {
        Context {
            client: self.source.client(),
            headers: self.source.headers(),
            timeout: None,
            limiter: None,
            retry: &self.settings.retry,
            retries: Some(&self.settings.retries),
            progress,
            cancel: &self.cancel,
            flow,
        }
    }

    fn source<'a>(&'a self, key: &'a FetchKey) -> Source<'a> {
        self.source.engine(key)
    }

    /// Fetches `span` of the unit's object into memory of `len` bytes: the engine retries,
    /// resumes (`If-Match` on the pinned ETag), checks every answer, and for a whole object
    /// verifies its MD5 ETag and any checksum the store returned. A slow span's tail may be
    /// cut into pieces for the request's idle workers ([`Tail`]).
    fn fetch(
        self: &Arc<Self>,
        unit: &Unit,
        span: Span,
        len: u64,
        first: Option<engine::Answer>,
    ) -> Result<(Vec<u8>, Fetched), FetchError> {
        // Leave from the bucket after the budget is reserved, never before: a unit that
        // waited at the gate holding its turn would stop the units before it.
        let flow = self.settings.flows.flow(&self.source.flow_name(&unit.key));
        let Some(permit) = flow.acquire(&self.cancel) else {
            return Err(self.error(&unit.key, None, FetchErrorKind::Cancelled));
        };
        let progress = Progress::new();
        let ctx = self.context(&progress, Some(&permit));
        let mut dest = MemoryDest::new(len);
        let expect = Expect {
            sha256: unit.key.sha256.as_ref().filter(|_| span == Span::Whole),
            checksum: span == Span::Whole,
            md5_etag: span == Span::Whole,
            size: None, // the memory's size is the key's: another size fails at once
            etag: None, // a listed ETag pins every part (`If-Match`)
        };
        let range = match span {
            Span::Range { start, end } if end > start => Some((start, end - 1)),
            _ => None,
        };
        let source = self.source(&unit.key);
        // The request's idle workers may take pieces of a slow unit's tail.
        let helpers: &dyn Helpers = self;
        tail::fetch(
            &ctx,
            &source,
            span,
            &mut dest,
            &unit.pin,
            expect,
            first,
            Some(helpers),
        )
        .map(|fetched| {
            permit.succeeded(len);
            (dest.into_bytes(), fetched)
        })
        .map_err(|e| self.error(&unit.key, range, FetchErrorKind::from(e)))
    }

    fn run_whole(self: &Arc<Self>, unit: &Unit, size: u64) {
        let Ok(permit) = self.reserve(unit.item, 0, 1, size) else {
            return;
        };
        let result = self
            .fetch(unit, Span::Whole, size, None)
            .map(|(bytes, fetched)| {
                let etag = fetched.info.etag_unquoted().map(str::to_owned);
                Object::whole(unit.key.key.clone(), etag, bytes, permit)
            });
        self.post_item(unit.item, Slot::Done(result));
    }

    fn run_probe(self: &Arc<Self>, unit: &Unit) {
        let answer = match self.probe(unit) {
            Ok(answer) => answer,
            Err(error) => return self.fail_probe(unit, error),
        };
        let Some(size) = answer.framing.and_then(|f| f.len) else {
            let error = self.error(&unit.key, None, FetchErrorKind::NoLength);
            return self.fail_probe(unit, error);
        };
        if size <= self.settings.max_whole {
            self.set_shape(unit.item, size, 1);
            let Ok(permit) = self.reserve(unit.item, 0, 1, size) else {
                return;
            };
            let result =
                self.fetch(unit, Span::Whole, size, Some(answer))
                    .map(|(bytes, fetched)| {
                        let etag = fetched.info.etag_unquoted().map(str::to_owned);
                        Object::whole(unit.key.key.clone(), etag, bytes, permit)
                    });
            return self.post_item(unit.item, Slot::Done(result));
        }
        // A large object: this response's first part_size bytes are part 0; the other parts
        // are ranged GETs, pinned to this response's version, that other workers may start.
        let parts = size.div_ceil(self.settings.part_size);
        self.set_shape(unit.item, size, parts);
        let first = self.settings.part_size.min(size);
        let Ok(permit) = self.reserve(unit.item, 0, parts, first) else {
            return;
        };
        let span = Span::Range {
            start: 0,
            end: first,
        };
        let fetched = self.fetch(unit, span, first, Some(answer));
        self.post_first_part(unit, size, parts, fetched, permit);
    }

    /// A probe's GET: the answer whose headers say the object's size. It takes leave from
    /// the host's gate for the GET alone, so it is hedged and its first response counted
    /// as any other; the leave goes back with the answer in hand, before the budget is
    /// reserved: leave held while waiting for the turn could stop the units before it (the
    /// request's tokens bound the probes). The body is read under leave taken again.
    fn probe(&self, unit: &Unit) -> Result<engine::Answer, FetchError> {
        let flow = self.settings.flows.flow(&self.source.flow_name(&unit.key));
        let Some(permit) = flow.acquire(&self.cancel) else {
            return Err(self.error(&unit.key, None, FetchErrorKind::Cancelled));
        };
        let progress = Progress::new();
        let ctx = self.context(&progress, Some(&permit));
        let source = self.source(&unit.key);
        let asked = Asked {
            start: 0,
            end: None,
        };
        engine::request_retried(&ctx, &source, |location| {
            engine::request(&ctx, &source, location, asked, Condition::None)
        })
        .map_err(|e| self.error(&unit.key, None, FetchErrorKind::from(e)))
    }

    /// A probe failed before its size was known: it still has to pass the turn on.
    fn fail_probe(&self, unit: &Unit, error: FetchError) {
        self.forget_open(unit.item);
        if self.wait_turn(unit.item, 0).is_ok() {
            self.advance(unit.item, 0, 1);
            self.post_item(unit.item, Slot::Done(Err(error)));
        }
    }

    fn run_part(self: &Arc<Self>, unit: &Unit, start: u64, end: u64, total: u64, parts: u64) {
        let Ok(permit) = self.reserve(unit.item, unit.part, parts, end - start) else {
            return;
        };
        let fetched = self.fetch(unit, Span::Range { start, end }, end - start, None);
        if unit.part == 0 {
            return self.post_first_part(unit, total, parts, fetched, permit);
        }
        let data = fetched.map(|(bytes, _)| PartData {
            bytes,
            _permit: permit,
        });
        self.post_part(unit.item, unit.part, data);
    }

    /// Part 0 of a streamed object makes the item: the object, then its first part. When
    /// it failed, the item is that error and none of its other parts is fetched or kept.
    fn post_first_part(
        &self,
        unit: &Unit,
        size: u64,
        parts: u64,
        fetched: Result<(Vec<u8>, Fetched), FetchError>,
        permit: BudgetPermit,
    ) {
        match fetched {
            Ok((bytes, fetched)) => {
                let etag = fetched.info.etag_unquoted().map(str::to_owned);
                // A ranged GET carries no checksum of the whole: one HEAD asks for it.
                let checksum = self.source.stored_checksum(&unit.key.key, etag.as_deref());
                let md5 = fetched.info.md5().filter(|_| self.source.etag_is_md5());
                let verifier = Verifier::new(unit.key.sha256.as_ref(), md5, checksum.as_ref());
                self.post_item(
                    unit.item,
                    Slot::Streamed {
                        key: unit.key.key.clone(),
                        size,
                        verifier,
                        etag,
                        parts,
                    },
                );
                self.post_part(
                    unit.item,
                    0,
                    Ok(PartData {
                        bytes,
                        _permit: permit,
                    }),
                );
            }
            Err(e) => {
                drop(permit);
                self.abandon_item(unit.item);
                self.post_item(unit.item, Slot::Done(Err(e)));
            }
        }
    }
}
