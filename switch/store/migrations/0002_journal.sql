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
CREATE FUNCTION journal_append(
    streams text[], expected integer[], terminal boolean[],
    event_stream integer[], types text[], payloads jsonb[]
) RETURNS TABLE (stream_id text, last_seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    conflicts jsonb;
BEGIN
    INSERT INTO journal_streams AS js (stream_id, kind, last_seq)
    SELECT s, split_part(s, ':', 1), 0 FROM unnest(streams) AS s
    ON CONFLICT DO NOTHING;

    -- Lock the heads in a fixed order so that two writers cannot deadlock.
    PERFORM 1 FROM journal_streams js WHERE js.stream_id = ANY (streams)
    ORDER BY js.stream_id FOR UPDATE;

    SELECT jsonb_agg(jsonb_build_object('stream', r.s, 'expected', r.e, 'actual', js.last_seq))
    INTO conflicts
    FROM unnest(streams, expected) AS r(s, e)
    JOIN journal_streams js ON js.stream_id = r.s
    WHERE r.e IS NOT NULL AND r.e <> js.last_seq;
    IF conflicts IS NOT NULL THEN
        RAISE EXCEPTION 'journal conflict' USING ERRCODE = 'FJ409', DETAIL = conflicts::text;
    END IF;

    INSERT INTO journal (stream_id, seq, type, payload)
    SELECT streams[ev.si],
           js.last_seq + row_number() OVER (PARTITION BY ev.si ORDER BY ev.ord)::integer,
           ev.t, ev.p
    FROM unnest(event_stream, types, payloads) WITH ORDINALITY AS ev(si, t, p, ord)
    JOIN journal_streams js ON js.stream_id = streams[ev.si];

    RETURN QUERY
    UPDATE journal_streams js
    SET last_seq = js.last_seq + c.n,
        terminal = js.terminal OR c.term,
        updated_at = now()
    FROM (
        SELECT streams[g.si] AS s, terminal[g.si] AS term, g.n
        FROM (SELECT si, count(*)::integer AS n FROM unnest(event_stream) AS si GROUP BY si) AS g
    ) AS c
    WHERE js.stream_id = c.s
    RETURNING js.stream_id, js.last_seq;
END
$$;
