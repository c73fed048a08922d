/* plot_frame.c - what every plot's script shares (see plot_frame.h): units, notes, the
 * gnuplot frame around a plot, output files in the report directory, and a colour per strategy.
 * Deliberately not here: any one plot (plot_timeline.c, plot_sweeps.c, plot_layers.c).
 */
#include "plot_frame.h"

#include <stdarg.h>
#include <string.h>

#define KIB ((int64_t)1 << 10)
#define MIB ((int64_t)1 << 20)
#define GIB ((int64_t)1 << 30)

/* the two baselines in greys, the row strategies in distinct hues */
const char *const plot_strategy_colour[STRAT_COUNT] = {
    "#303030", "#9a9a9a", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"};

plot_unit plot_unit_for(int64_t max_bytes)
{
    if (max_bytes >= GIB)
        return (plot_unit){(double)GIB, "GiB"};
    if (max_bytes >= MIB)
        return (plot_unit){(double)MIB, "MiB"};
    return (plot_unit){(double)KIB, "KiB"};
}

void plot_note(plot_made *m, const char *fmt, ...)
{
    size_t at = strlen(m->note);
    if (at + 1 >= sizeof m->note)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note + at, sizeof m->note - at, fmt, ap);
    va_end(ap);
}

/* "vgg16, batch 64, fp32, momentum" */
static void config_text(const analysis_t *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s, batch %d, %s, %s", a->net->name, a->cfg.batch,
             cost_dtype_name(a->cfg.dtype), cost_optim_name(a->cfg.optim));
}

/* A double-quoted gnuplot string. */
void plot_gp_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void plot_gp_begin(FILE *f, const char *name, plot_unit u, int width, int height)
{
    fprintf(f,
            "# %s.gp - written by lrcnn-sim; remakes %s.png and %s.svg.\n"
            "# Run it in this directory (the data are read by relative path): gnuplot %s.gp\n"
            "# Sizes in the data files are bytes; `unit` converts them for the axes.\n\n",
            name, name, name, name);
    fprintf(f, "unit = %.1f\nunit_name = \"%s\"\n\n", u.bytes, u.name);
    fprintf(f,
            "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
            "    set terminal pngcairo size %d,%d font \"sans,11\" noenhanced\n"
            "} else {\n"
            "    set terminal png size %d,%d font \"sans,11\" noenhanced\n"
            "}\n"
            "set output \"%s.png\"\n"
            "set datafile separator comma\n"
            "set border 3\nset tics nomirror\nset grid ytics lc rgb \"#e4e4e4\"\n",
            width, height, width, height, name);
}

void plot_gp_end(FILE *f, const char *name, int width, int height)
{
    fprintf(f,
            "\nset terminal svg size %d,%d dynamic font \"sans,11\" noenhanced background \"#ffffff\"\n"
            "set output \"%s.svg\"\nreplot\nunset output\n",
            width, height, name);
}

void plot_gp_title(FILE *f, const analysis_t *a, const char *what)
{
    char cfg[256], title[512];
    config_text(a, cfg, sizeof cfg);
    snprintf(title, sizeof title, "%s: %s", cfg, what);
    fputs("set title ", f);
    plot_gp_string(f, title);
    fputc('\n', f);
}

lr_status plot_open_in(lr_outfile *o, const char *dir, const char *file)
{
    char path[sizeof o->path];
    int n = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= sizeof path)
        return lr_fail(LR_ERR_IO, "%s/%s: path too long", dir, file);
    return lr_outfile_open(o, path);
}

/* Layer names go into CSV cells unquoted. */
void plot_csv_name(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == ',' || *s == '"' || *s == '\n' ? '_' : *s, f);
}
