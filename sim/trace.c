/* trace.c - the timeline CSV and the Chrome/Perfetto trace of a replayed schedule (see sim.h).
 *
 * Both writers replay first (sim_timeline) and open the file only when the replay succeeded,
 * so a broken schedule leaves no file behind; the file itself is written all or nothing
 * (outfile.h). Layer names come from `net` (a NULL net, or a node it lacks, prints the node
 * index instead) and are quoted for CSV and escaped for JSON.
 *
 * Trace time model: a RUN step lasts max(1, flops / 1e6) us (1 us per MFLOP), a COPY 1 us,
 * ALLOC and FREE take no time and emit a memory counter sample.
 *
 * Deliberately not here: replay itself (replay.c), plots (reports/).
 */
#include "sim.h"

#include <stdbool.h>
#include <string.h>

#include "outfile.h"

#define MIB_F 1048576.0

/* The layer's name, or its index when net does not name it ("" for node -1). */
static const char *layer_name(const net_t *net, int node, char buf[static 16])
{
    if (node < 0)
        return "";
    if (net && node < net->n_nodes)
        return net->nodes[node].name;
    snprintf(buf, 16, "%d", node);
    return buf;
}

/* ------------------------------------------------------------------ timeline CSV */

/* RFC 4180: a field holding a comma, quote or line break is quoted, quotes doubled. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_header(FILE *f)
{
    fputs("step,op,pass,layer,part,stage,row_lo,row_hi,live_bytes,reserved_bytes", f);
    for (int c = 0; c < TC_COUNT; c++)
        fprintf(f, ",%s_bytes", sched_class_name((sched_class)c));
    fputs(",flops_cum\n", f);
}

static void csv_row(FILE *f, const sched_t *s, const net_t *net, int i, const sim_point *pt)
{
    const sched_step *p = &s->steps[i];
    char buf[16];
    fprintf(f, "%d,%s,%s,", i, sched_op_name((sched_op)p->op),
            sched_pass_name((sched_pass)p->pass));
    csv_field(f, layer_name(net, p->node, buf));
    fprintf(f, ",%d,%d,%d,%d,%lld,%lld", p->part, p->stage, p->row_lo, p->row_hi,
            (long long)pt->live, (long long)pt->reserved);
    for (int c = 0; c < TC_COUNT; c++)
        fprintf(f, ",%lld", (long long)pt->by_class[c]);
    fprintf(f, ",%lld\n", (long long)pt->flops_cum);
}

lr_status sim_write_timeline_csv(const sched_t *s, const net_t *net, sim_allocator a,
                                 const char *path)
{
    return sim_write_timeline_csv_conf(s, net, a, NULL, path);
}

lr_status sim_write_timeline_csv_conf(const sched_t *s, const net_t *net, sim_allocator a,
                                      const sim_caching *conf, const char *path)
{
    sim_point *pts;
    LR_TRY(sim_timeline_conf(s, a, conf, &pts, NULL));
    lr_outfile o;
    lr_status st = lr_outfile_open(&o, path);
    if (st == LR_OK) {
        csv_header(o.f);
        for (int i = 0; i < s->n_steps; i++)
            csv_row(o.f, s, net, i, &pts[i]);
        st = lr_outfile_commit(&o);
    }
    free(pts);
    return st;
}

/* ------------------------------------------------------------------ Chrome trace JSON */

typedef struct {
    FILE *f;
    const sched_t *s;
    const net_t *net;
    sim_allocator a;
    bool first;  /* no event written yet: no comma before the next */
    double ts;   /* us */
} trace_writer;

/* A JSON string literal: quotes, backslashes and control characters escaped; other bytes
 * (UTF-8 from the network file) pass through. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void event_begin(trace_writer *w)
{
    fputs(w->first ? "\n" : ",\n", w->f);
    w->first = false;
}

/* Names the track of each pass that has a slice, in pass order. */
static void trace_tracks(trace_writer *w)
{
    bool used[PASS_COUNT] = {false};
    for (int i = 0; i < w->s->n_steps; i++) {
        const sched_step *p = &w->s->steps[i];
        if ((p->op == STEP_RUN || p->op == STEP_COPY) && p->pass < PASS_COUNT)
            used[p->pass] = true;
    }
    event_begin(w);
    fputs("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":", w->f);
    json_string(w->f, w->net ? w->net->name : "lrcnn schedule");
    fputs("}}", w->f);
    for (int k = 0; k < PASS_COUNT; k++) {
        if (!used[k])
            continue;
        event_begin(w);
        fprintf(w->f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                      "\"args\":{\"name\":\"%s\"}}", k + 1, sched_pass_name((sched_pass)k));
        event_begin(w);
        fprintf(w->f, "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                      "\"args\":{\"sort_index\":%d}}", k + 1, k);
    }
}

static void rows_arg(FILE *f, const sched_step *p)
{
    if (p->row_lo < 0)
        fputs("\"rows\":\"all\"", f);
    else
        fprintf(f, "\"rows\":\"%d-%d\"", p->row_lo, p->row_hi);
}

/* A complete event ("X") for a RUN or COPY step; returns its duration in us. */
static double trace_slice(trace_writer *w, int i)
{
    const sched_step *p = &w->s->steps[i];
    char buf[16];
    bool run = p->op == STEP_RUN;
    double dur = run && p->flops > 1000000 ? (double)p->flops / 1e6 : 1.0;
    const char *pass = sched_pass_name((sched_pass)p->pass);
    const char *layer = p->node < 0 ? "(no layer)" : layer_name(w->net, p->node, buf);
    /* "<layer> <PASS> p<part>", the partition left out for whole-map steps (part -1) */
    char name[NET_NAME_MAX + 64];
    if (p->part >= 0)
        snprintf(name, sizeof name, "%s%s %s p%d", run ? "" : "copy ", layer, pass, p->part);
    else
        snprintf(name, sizeof name, "%s%s %s", run ? "" : "copy ", layer, pass);
    event_begin(w);
    fputs("{\"name\":", w->f);
    json_string(w->f, name);
    fprintf(w->f, ",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                  "\"args\":{\"step\":%d,\"stage\":%d,", run ? "RUN" : "COPY",
            p->pass < PASS_COUNT ? p->pass + 1 : 0, w->ts, dur, i, p->stage);
    rows_arg(w->f, p);
    if (run)
        fprintf(w->f, ",\"flops\":%lld}}", (long long)p->flops);
    else
        fprintf(w->f, ",\"src\":%d,\"dst\":%d,\"accumulate\":%s}}", p->src, p->t,
                p->accumulate ? "true" : "false");
    return dur;
}

/* A counter sample ("C"): MiB per class (exact bytes), the model's total, and for the caching
 * model its reserved bytes. */
static void trace_counter(trace_writer *w, const sim_point *pt)
{
    event_begin(w);
    fprintf(w->f, "{\"name\":\"memory (MiB)\",\"ph\":\"C\",\"pid\":1,\"tid\":0,\"ts\":%.3f,"
                  "\"args\":{", w->ts);
    for (int c = 0; c < TC_COUNT; c++)
        fprintf(w->f, "\"%s\":%.6f,", sched_class_name((sched_class)c),
                (double)pt->by_class[c] / MIB_F);
    fprintf(w->f, "\"total\":%.6f", (double)pt->live / MIB_F);
    if (w->a == ALLOC_CACHING)
        fprintf(w->f, ",\"reserved\":%.6f", (double)pt->reserved / MIB_F);
    fputs("}}", w->f);
}

static void trace_other_data(trace_writer *w, const sim_point *pts)
{
    int n = w->s->n_steps, peak_step = -1;
    int64_t peak = 0, peak_reserved = 0;
    for (int i = 0; i < n; i++) {
        if (peak_step < 0 || pts[i].live > peak) {
            peak = pts[i].live;
            peak_step = i;
        }
        if (pts[i].reserved > peak_reserved)
            peak_reserved = pts[i].reserved;
    }
    fputs("\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"network\":", w->f);
    json_string(w->f, w->net ? w->net->name : "");
    fprintf(w->f, ",\"allocator\":\"%s\",\"steps\":%d,\"peak_bytes\":%lld,\"peak_step\":%d,"
                  "\"peak_reserved_bytes\":%lld,\"flops\":%lld,"
                  "\"time_model\":\"RUN: 1 us per MFLOP (at least 1 us); COPY: 1 us\"}}\n",
            sim_allocator_name(w->a), n, (long long)peak, peak_step, (long long)peak_reserved,
            (long long)(n > 0 ? pts[n - 1].flops_cum : 0));
}

static void trace_body(trace_writer *w, const sim_point *pts)
{
    fputs("{\"traceEvents\":[", w->f);
    trace_tracks(w);
    for (int i = 0; i < w->s->n_steps; i++) {
        const sched_step *p = &w->s->steps[i];
        if (p->op == STEP_RUN || p->op == STEP_COPY)
            w->ts += trace_slice(w, i);
        else
            trace_counter(w, &pts[i]);
    }
    trace_other_data(w, pts);
}

lr_status sim_write_trace(const sched_t *s, const net_t *net, sim_allocator a, const char *path)
{
    return sim_write_trace_conf(s, net, a, NULL, path);
}

lr_status sim_write_trace_conf(const sched_t *s, const net_t *net, sim_allocator a,
                               const sim_caching *conf, const char *path)
{
    sim_point *pts;
    LR_TRY(sim_timeline_conf(s, a, conf, &pts, NULL));
    lr_outfile o;
    lr_status st = lr_outfile_open(&o, path);
    if (st == LR_OK) {
        trace_writer w = {.f = o.f, .s = s, .net = net, .a = a, .first = true, .ts = 0.0};
        trace_body(&w, pts);
        st = lr_outfile_commit(&o);
    }
    free(pts);
    return st;
}
