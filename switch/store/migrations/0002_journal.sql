-- The append-only journal: every actor's write-ahead log, one stream per order or pump sale.

CREATE TABLE journal (
    position    bigint GENERATED ALWAYS AS IDENTITY,
    stream_id   text NOT NULL,
    seq         integer NOT NULL CHECK (seq >= 1),
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX journal_position ON journal (position);

-- One row per stream: its head (last seq) and whether it reached a terminal state.
CREATE TABLE journal_streams (
    stream_id   text PRIMARY KEY,
    kind        text NOT NULL,           -- the part of the stream id before ':'
    last_seq    integer NOT NULL CHECK (last_seq >= 0),
    terminal    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_streams_open ON journal_streams (kind, stream_id) WHERE NOT terminal;

-- Append a batch of streams' events in one round trip, atomically.
-- Stream i gets the events whose event_stream is i, in order. expected[i] is the head the
-- writer believes in (NULL: append at the current head). Any mismatch aborts the whole batch
-- with SQLSTATE FJ409 and the offending streams (JSON) in DETAIL; nothing is written.
-- Three passes: create new streams, move existing heads (compare-and-set), insert events.
CREATE FUNCTION journal_append(
    streams text[], expected integer[], terminal boolean[],
    event_stream integer[], types text[], payloads jsonb[]
) RETURNS TABLE (stream_id text, last_seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    moved_stream text[];
    moved_base integer[];
    moved_last integer[];
    conflicts jsonb;
BEGIN
    WITH req AS (
        SELECT r.s, r.e, r.t, c.n
        FROM unnest(streams, expected, terminal) WITH ORDINALITY AS r(s, e, t, i)
        JOIN (SELECT si, count(*)::integer AS n FROM unnest(event_stream) AS si GROUP BY si) AS c
          ON c.si = r.i
    ),
    created AS (
        INSERT INTO journal_streams AS js (stream_id, kind, last_seq, terminal)
        SELECT req.s, split_part(req.s, ':', 1), req.n, req.t FROM req
        WHERE coalesce(req.e, 0) = 0
        ON CONFLICT DO NOTHING
        RETURNING js.stream_id, 0 AS base, js.last_seq
    ),
    advanced AS (
        UPDATE journal_streams AS js
        SET last_seq = js.last_seq + req.n,
            terminal = js.terminal OR req.t,
            updated_at = now()
        FROM req
        WHERE js.stream_id = req.s AND (req.e IS NULL OR js.last_seq = req.e)
        RETURNING js.stream_id, js.last_seq - req.n AS base, js.last_seq
    )
    SELECT array_agg(m.stream_id), array_agg(m.base), array_agg(m.last_seq)
    INTO moved_stream, moved_base, moved_last
    FROM (SELECT * FROM created UNION ALL SELECT * FROM advanced) AS m;

    IF coalesce(array_length(moved_stream, 1), 0) <> array_length(streams, 1) THEN
        SELECT jsonb_agg(jsonb_build_object('stream', r.s, 'expected', r.e, 'actual', js.last_seq))
        INTO conflicts
        FROM unnest(streams, expected) AS r(s, e)
        LEFT JOIN journal_streams AS js ON js.stream_id = r.s
        WHERE NOT (r.s = ANY (coalesce(moved_stream, '{}')));
        RAISE EXCEPTION 'journal conflict' USING ERRCODE = 'FJ409', DETAIL = conflicts::text;
    END IF;

    INSERT INTO journal (stream_id, seq, type, payload)
    SELECT m.s, m.base + row_number() OVER (PARTITION BY ev.si ORDER BY ev.ord)::integer, ev.t, ev.p
    FROM unnest(event_stream, types, payloads) WITH ORDINALITY AS ev(si, t, p, ord)
    JOIN unnest(moved_stream, moved_base) AS m(s, base) ON m.s = streams[ev.si];

    RETURN QUERY SELECT * FROM unnest(moved_stream, moved_last);
END
$$;
