/**
 * The answer's photo with its numbered, named boxes, drawn under the answer in any chat front end that
 * loads LangGraph generative UI (Agent Chat UI, LangGraph Studio).
 *
 * The graph's cite step pushes one `cited_photo` UI message per answer (rcmu_agent/generative_ui.py),
 * tied to the AI message by id. Its props carry the photo as a small JPEG data URL — once per photo in a
 * thread; a follow-up about the same photo names it by id and the picture is taken from the earlier
 * message in the thread's `ui` state — and the boxes in the photo's own pixels. Pointing at, focusing or
 * pressing a `[n]` (or a box) lights that box and dims the others.
 *
 * Styles are inline: the component renders inside a shadow root, where the page's CSS does not reach.
 * React is the host page's (the bundler leaves it external), so this file imports nothing else.
 */
import { useState } from "react";
import type { CSSProperties } from "react";
import { useStreamContext } from "@langchain/langgraph-sdk/react-ui";

type Region = {
  index: number;
  name: string | null;
  category: string;
  box: [number, number, number, number];
  cited: boolean;
};

export type CitedPhotoProps = {
  photo: string | null;
  image: string | null;
  width: number;
  height: number;
  regions: Region[];
};

const COLORS = ["#e4572e", "#2e86de", "#17a34a", "#a855f7", "#d97706", "#0891b2", "#db2777", "#65a30d"];
const color = (n: number) => COLORS[(n - 1) % COLORS.length];
const label = (r: Region) => r.name ?? `unknown ${r.category}`;
const tag = (r: Region) => `${r.index} ${label(r)}`; // what the box itself says: its number and name

/** The picture for this photo: the message's own, or the one an earlier answer in the thread carried. */
function usePicture(props: CitedPhotoProps): string | null {
  let values: { ui?: { name: string; props: Partial<CitedPhotoProps> }[] } | undefined;
  try {
    values = useStreamContext().values as typeof values;
  } catch {
    values = undefined; // rendered outside a LangGraph stream (a plain React page): props only
  }
  if (props.image) return props.image;
  const earlier = (values?.ui ?? []).find(
    (m) => m.name === "cited_photo" && m.props.photo === props.photo && m.props.image,
  );
  return earlier?.props.image ?? null;
}

function CitedPhoto(props: CitedPhotoProps) {
  const [lit, setLit] = useState<number | null>(null);
  const picture = usePicture(props);
  const { width, height, regions } = props;
  const stroke = Math.max(2, Math.round(Math.max(width, height) / 250));
  const font = Math.max(12, Math.round(Math.max(width, height) / 40));

  const chip = (r: Region): CSSProperties => ({
    display: "inline-flex",
    alignItems: "center",
    gap: 6,
    margin: "0 8px 6px 0",
    padding: "3px 10px",
    borderRadius: 999,
    border: `2px solid ${color(r.index)}`,
    background: lit === r.index ? color(r.index) : "#fff",
    color: lit === r.index ? "#fff" : "#111",
    fontFamily: "inherit",
    fontSize: "inherit",
    fontWeight: r.cited ? 700 : 400,
    cursor: "pointer",
  });

  return (
    <figure
      data-rcmu="cited-photo"
      style={{ margin: "8px 0", maxWidth: 560, fontFamily: "system-ui, sans-serif", fontSize: 14, color: "#111" }}
    >
      {picture ? (
        <div style={{ position: "relative", lineHeight: 0 }}>
          <img
            src={picture}
            alt={`The photo, with ${regions.length} numbered region${regions.length === 1 ? "" : "s"}`}
            style={{ width: "100%", height: "auto", borderRadius: 8, display: "block" }}
          />
          <svg
            viewBox={`0 0 ${width} ${height}`}
            preserveAspectRatio="none"
            style={{ position: "absolute", inset: 0, width: "100%", height: "100%" }}
            aria-hidden="true"
          >
            {regions.map((r) => {
              const [x1, y1, x2, y2] = r.box;
              const dim = lit !== null && lit !== r.index;
              return (
                <g
                  key={r.index}
                  data-region={r.index}
                  data-lit={lit === r.index ? "true" : "false"}
                  opacity={dim ? 0.25 : 1}
                  onMouseEnter={() => setLit(r.index)}
                  onMouseLeave={() => setLit(null)}
                  style={{ cursor: "pointer" }}
                >
                  <rect
                    x={x1}
                    y={y1}
                    width={x2 - x1}
                    height={y2 - y1}
                    fill={lit === r.index ? `${color(r.index)}33` : "none"}
                    stroke={color(r.index)}
                    strokeWidth={lit === r.index ? stroke * 2 : stroke}
                  />
                  <rect
                    x={x1}
                    y={Math.max(0, y1 - font * 1.3)}
                    width={font * (1.2 + 0.62 * tag(r).length)}
                    height={font * 1.3}
                    fill={color(r.index)}
                  />
                  <text x={x1 + font * 0.3} y={Math.max(font, y1 - font * 0.3)} fontSize={font} fill="#fff" fontWeight={700}>
                    {tag(r)}
                  </text>
                </g>
              );
            })}
          </svg>
        </div>
      ) : null}
      <figcaption style={{ marginTop: 8, lineHeight: 1.4 }}>
        {regions.map((r) => (
          <button
            key={r.index}
            type="button"
            data-cite={r.index}
            aria-pressed={lit === r.index}
            onMouseEnter={() => setLit(r.index)}
            onMouseLeave={() => setLit(null)}
            onFocus={() => setLit(r.index)}
            onBlur={() => setLit(null)}
            onClick={() => setLit(lit === r.index ? null : r.index)}
            style={chip(r)}
          >
            <span>[{r.index}]</span>
            <span>{label(r)}</span>
          </button>
        ))}
      </figcaption>
    </figure>
  );
}

export default { cited_photo: CitedPhoto };
