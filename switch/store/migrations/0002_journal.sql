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

-- One row per stream: its kind and whether it reached a terminal state. A stream's head is
-- not stored: it is the highest seq in the journal, one index probe away, so an append
-- updates no row here (only the first append creates one, the last may mark it terminal).
CREATE TABLE journal_streams (
    stream_id   text PRIMARY KEY,
    kind        text NOT NULL,           -- the part of the stream id before ':'
    terminal    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE INDEX journal_streams_open ON journal_streams (kind, stream_id) WHERE NOT terminal;

-- Append a batch of streams' events in one round trip, atomically.
-- Stream i gets the events whose p_event_stream is i, in order. p_expected[i] is the head the
-- writer believes in (NULL: append at the current head). A mismatch aborts the whole batch
-- with SQLSTATE FJ409 and the offending streams (JSON) in DETAIL; nothing is written. A
-- concurrent writer that appended first makes the insert a unique violation (23505) on the
-- primary key instead: the caller retries, and then sees the conflict.
CREATE FUNCTION journal_append(
    p_streams text[], p_expected integer[], p_terminal boolean[],
    p_event_stream integer[], p_types text[], p_payloads jsonb[]
) RETURNS TABLE (stream_id text, last_seq integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    heads integer[];
    conflicts jsonb;
BEGIN
    SELECT array_agg(
               coalesce((SELECT max(j.seq) FROM journal AS j WHERE j.stream_id = r.s), 0)
               ORDER BY r.i)
    INTO heads
    FROM unnest(p_streams) WITH ORDINALITY AS r(s, i);

    SELECT jsonb_agg(jsonb_build_object(
               'stream', p_streams[i], 'expected', p_expected[i], 'actual', heads[i]))
    INTO conflicts
    FROM generate_subscripts(p_streams, 1) AS i
    WHERE p_expected[i] IS NOT NULL AND p_expected[i] <> heads[i];
    IF conflicts IS NOT NULL THEN
        RAISE EXCEPTION 'journal conflict' USING ERRCODE = 'FJ409', DETAIL = conflicts::text;
    END IF;

    INSERT INTO journal_streams (stream_id, kind)
    SELECT p_streams[i], split_part(p_streams[i], ':', 1)
    FROM generate_subscripts(p_streams, 1) AS i
    WHERE heads[i] = 0
    ON CONFLICT DO NOTHING;

    INSERT INTO journal (stream_id, seq, type, payload)
    SELECT p_streams[ev.si],
           heads[ev.si] + row_number() OVER (PARTITION BY ev.si ORDER BY ev.ord)::integer,
           ev.t, ev.p
    FROM unnest(p_event_stream, p_types, p_payloads) WITH ORDINALITY AS ev(si, t, p, ord);

    UPDATE journal_streams AS js SET terminal = true, closed_at = now()
    FROM generate_subscripts(p_streams, 1) AS i
    WHERE p_terminal[i] AND js.stream_id = p_streams[i] AND NOT js.terminal;

    RETURN QUERY
    SELECT p_streams[c.si], heads[c.si] + c.n
    FROM (SELECT si, count(*)::integer AS n FROM unnest(p_event_stream) AS si GROUP BY si) AS c;
END
$$;
