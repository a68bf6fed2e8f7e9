#include "datasets/image_io.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#ifdef KB_HAVE_GIF
#include <gif_lib.h>
#endif
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "util/fileio.h"

/* A failed read of a file being decoded: the machine's failure (EIO, say),
 * not the file's content, so an error of kind KB_ERR_OTHER. */
static int read_failed(const char *path, int errnum, kb_err *err) {
    return kb_fail(err, "%s: read failed: %s", path, strerror(errnum ? errnum : EIO));
}

/* ---- PNG ------------------------------------------------------------- */

/* libpng reports errors by calling back and longjmp'ing. Everything the
 * error path needs (the message, the row pointers to free, what failed)
 * lives in this heap object, whose address never changes after setjmp: C11
 * 7.13.2.1 leaves automatic variables changed after setjmp indeterminate
 * after the jump. */
typedef struct {
    char msg[256];
    png_bytep *rows;
    uint8_t *wide; /* a 16-bit grey image's samples, before GREY16_CLIP */
    FILE *fp;
    int read_errno;    /* a read failed (not: the file ended) */
    int out_of_memory; /* an allocation libpng asked for failed */
} png_state;

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_state *st = png_get_error_ptr(png);
    snprintf(st->msg, sizeof st->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (e.g. "iCCP: known incorrect sRGB profile") do not change pixels. */
static void png_warning_cb(png_structp png, png_const_charp msg) {}

/* libpng's reads and allocations come through these two so that a failure of
 * the machine is told from a corrupt file: libpng reports both the same way. */
static void png_read_cb(png_structp png, png_bytep data, size_t n) {
    png_state *st = png_get_io_ptr(png);
    if (fread(data, 1, n, st->fp) == n) return;
    if (ferror(st->fp)) st->read_errno = errno ? errno : EIO;
    png_error(png, "Read Error"); /* libpng's own words for a short read */
}

static png_voidp png_malloc_cb(png_structp png, png_alloc_size_t size) {
    void *p = malloc(size);
    if (!p) ((png_state *)png_get_mem_ptr(png))->out_of_memory = 1;
    return p;
}

static void png_free_cb(png_structp png, png_voidp p) { free(p); }

/* The error libpng jumped out with: the machine's, or the file's content. */
static int png_decode_error(const png_state *st, const char *path, kb_err *err) {
    if (st->read_errno) return read_failed(path, st->read_errno, err);
    if (st->out_of_memory) return kb_fail(err, "%s: out of memory decoding the PNG (%s)", path, st->msg);
    return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: corrupt or truncated PNG: %s%s", path, st->msg,
                      feof(st->fp) ? " (file ends early)" : "");
}

/* How a 16-bit grey PNG becomes 8 bits. Pillow opens it as mode "I" (32-bit
 * integers) and its convert('RGB') clips at 255, so most pixels turn white:
 * that is the image pytorch-fid, torch-fidelity and clean-fid measure, so the
 * eval path clips too. The dataset recipe keeps the high byte instead, the
 * image a person sees (docs/datasets.md). Other 16-bit PNGs keep the high
 * byte either way: Pillow reads them with its ;16B raw modes, which do that. */
typedef enum { GREY16_HIGH_BYTE, GREY16_CLIP } grey16_rule;

/* An index past a short palette breaks the PNG spec, but such files exist.
 * libpng reads those indices as black; Pillow as grey (i, i, i), its
 * palettes starting as a grey ramp that PLTE's colours overwrite. So the
 * palette is padded with that ramp to 2^depth entries. */
static void png_pad_palette_with_grey(png_structp png, png_infop info) {
    png_colorp plte;
    int n, full = 1 << png_get_bit_depth(png, info);
    if (!png_get_PLTE(png, info, &plte, &n) || n >= full) return;
    png_color padded[256];
    memcpy(padded, plte, (size_t)n * sizeof *padded); /* png_set_PLTE frees plte */
    for (int i = n; i < full; i++) padded[i].red = padded[i].green = padded[i].blue = (png_byte)i;
    png_set_PLTE(png, info, padded, full);
}

/* The transforms that make any PNG 8-bit grey/GA/RGB/RGBA, as Pillow sees it
 * (16-bit grey under GREY16_CLIP stays 16-bit: png_clip_grey16 finishes it).
 * Pillow keeps a 16-bit image's tRNS key as 16-bit values beside 8-bit
 * pixels, so it never takes effect (tests/ref/data_ref.py: grey 16 is read
 * without alpha); libpng would apply it, so it is applied for 8 bits and
 * fewer only. */
static void png_set_8bit_transforms(png_structp png, png_infop info, grey16_rule grey16) {
    int color_type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    int keep_16 = grey16 == GREY16_CLIP && color_type == PNG_COLOR_TYPE_GRAY;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_pad_palette_with_grey(png, info);
        png_set_palette_to_rgb(png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth <= 8 && png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth == 16 && !keep_16) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Pillow's convert('RGB') of mode "I": each (big-endian) sample clipped at 255. */
static void png_clip_grey16(const uint8_t *wide, kb_image *img) {
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)wide[2 * i] << 8 | wide[2 * i + 1];
        img->px[i] = (uint8_t)(v > 255 ? 255 : v);
    }
}

static int png_decode(png_structp png, png_infop info, png_state *st, grey16_rule grey16, kb_image *img,
                      kb_err *err) {
    png_set_read_fn(png, st, png_read_cb);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_set_8bit_transforms(png, info, grey16);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int ch = png_get_channels(png, info), wide = png_get_bit_depth(png, info) == 16;
    if (kb_image_alloc(img, w, h, ch, err)) return -1;
    st->rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (wide) st->wide = malloc((size_t)w * h * 2);
    if (!st->rows || (wide && !st->wide)) return kb_fail(err, "out of memory for %d PNG rows", h);
    size_t stride = (size_t)w * ch * (wide ? 2 : 1);
    for (int y = 0; y < h; y++) st->rows[y] = (wide ? st->wide : img->px) + (size_t)y * stride;
    png_read_image(png, st->rows);
    png_read_end(png, NULL);
    if (wide) png_clip_grey16(st->wide, img);
    return 0;
}

static int png_check_signature(FILE *fp, const char *path, kb_err *err) {
    unsigned char sig[8];
    size_t n = fread(sig, 1, 8, fp);
    if (n != 8 && ferror(fp)) return read_failed(path, errno, err);
    if (n != 8 || png_sig_cmp(sig, 0, 8))
        return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: not a PNG file (bad signature)", path);
    return 0;
}

static int png_read_with(const char *path, grey16_rule grey16, kb_image *img, kb_err *err) {
    img->px = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    png_state *st = calloc(1, sizeof *st);
    if (!st || png_check_signature(fp, path, err)) {
        if (!st) kb_fail(err, "%s: out of memory", path);
        free(st);
        fclose(fp);
        return -1;
    }
    st->fp = fp;
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, st, png_error_cb, png_warning_cb, st,
                                               png_malloc_cb, png_free_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!png || !info) {
        kb_fail(err, "%s: out of memory starting the PNG decoder", path);
    } else if (setjmp(png_jmpbuf(png))) {
        kb_image_free(img);
        png_decode_error(st, path, err);
    } else {
        kb_err derr = {0};
        rc = png_decode(png, info, st, grey16, img, &derr);
        if (rc) {
            kb_image_free(img);
            kb_fail_as(err, derr.kind, "%s: %s", path, derr.msg);
        }
    }
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(st->rows);
    free(st->wide);
    free(st);
    fclose(fp);
    return rc;
}

int kb_png_read(const char *path, kb_image *img, kb_err *err) {
    return png_read_with(path, GREY16_HIGH_BYTE, img, err);
}

/* ---- JPEG ------------------------------------------------------------ */

/* As for PNG: the error manager (with the message) sits on the heap so that
 * nothing the error path reads is an automatic variable changed after setjmp. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX + 32];
    struct jpeg_decompress_struct cinfo;
    FILE *fp;
    int read_errno; /* a read failed (not: the file ended) */
} jpeg_state;

/* libjpeg's stdio source takes a failed read for the end of the file (it
 * never looks at ferror): noted at the error or warning that follows, while
 * errno is still the read's, so that an I/O error is not taken for a
 * truncated file. */
static void jpeg_note_read_error(jpeg_state *st) {
    if (!st->read_errno && ferror(st->fp)) st->read_errno = errno ? errno : EIO;
}

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    jpeg_state *st = (jpeg_state *)cinfo->err;
    jpeg_note_read_error(st);
    (*cinfo->err->format_message)(cinfo, st->msg);
    longjmp(st->jump, 1);
}

/* libjpeg only warns when the data ends early and fills the rest with grey;
 * Pillow refuses such a file ("image file is truncated"), and so do we.
 * Other warnings (e.g. extraneous bytes) are ignored, as Pillow does. */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    jpeg_state *st = (jpeg_state *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_note_read_error(st);
        snprintf(st->msg, sizeof st->msg, "file ends early");
        longjmp(st->jump, 1);
    }
}

/* Pillow reads CMYK JPEGs as inverted (raw mode "CMYK;I", Adobe's convention:
 * c = 255 - stored) and converts to RGB with nk = 255 - k,
 * v = nk - MULDIV255(c, nk), MULDIV255 being a rounded x/255. */
static void cmyk_to_rgb(kb_image *img) {
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *stored = img->px + i * 4;
        int nk = stored[3]; /* 255 - k with k = 255 - stored[3] */
        uint8_t rgb[3];
        for (int j = 0; j < 3; j++) {
            int t = (255 - stored[j]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        memcpy(img->px + i * 3, rgb, 3);
    }
    img->channels = 3;
}

/* The error libjpeg jumped out with: the machine's, or the file's content. */
static int jpeg_decode_error(const jpeg_state *st, const char *path, kb_err *err) {
    if (st->read_errno) return read_failed(path, st->read_errno, err);
    if (st->pub.msg_code == JERR_OUT_OF_MEMORY)
        return kb_fail(err, "%s: out of memory decoding the JPEG (%s)", path, st->msg);
    return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: corrupt or truncated JPEG: %s", path, st->msg);
}

/* dct_method and do_fancy_upsampling stay libjpeg's defaults (JDCT_ISLOW,
 * TRUE): Pillow changes them only in draft mode, which Image.open does not
 * use, so the same libjpeg-turbo gives the same bytes (test_decode_parity). */
static int jpeg_decode(struct jpeg_decompress_struct *cinfo, FILE *fp, kb_image *img, kb_err *err) {
    jpeg_stdio_src(cinfo, fp);
    jpeg_read_header(cinfo, TRUE);
    int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    if (cmyk) cinfo->out_color_space = JCS_CMYK;
    else if (cinfo->jpeg_color_space != JCS_GRAYSCALE) cinfo->out_color_space = JCS_RGB;
    jpeg_start_decompress(cinfo);
    if (kb_image_alloc(img, (int)cinfo->output_width, (int)cinfo->output_height, cinfo->output_components, err))
        return -1;
    size_t stride = (size_t)img->width * img->channels;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = img->px + (size_t)cinfo->output_scanline * stride;
        jpeg_read_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_decompress(cinfo);
    if (cmyk) cmyk_to_rgb(img);
    return 0;
}

int kb_jpeg_read(const char *path, kb_image *img, kb_err *err) {
    img->px = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    jpeg_state *st = calloc(1, sizeof *st);
    if (!st) {
        fclose(fp);
        return kb_fail(err, "%s: out of memory", path);
    }
    st->fp = fp;
    st->cinfo.err = jpeg_std_error(&st->pub);
    st->pub.error_exit = jpeg_error_exit_cb;
    st->pub.emit_message = jpeg_emit_message_cb;
    int rc = -1;
    if (setjmp(st->jump)) {
        kb_image_free(img);
        jpeg_decode_error(st, path, err);
    } else {
        jpeg_create_decompress(&st->cinfo);
        kb_err derr = {0};
        rc = jpeg_decode(&st->cinfo, fp, img, &derr);
        if (rc) {
            kb_image_free(img);
            kb_fail_as(err, derr.kind, "%s: %s", path, derr.msg);
        }
    }
    jpeg_destroy_decompress(&st->cinfo);
    free(st);
    fclose(fp);
    return rc;
}

/* ---- GIF ------------------------------------------------------------- */

#ifdef KB_HAVE_GIF
int kb_gif_supported(void) { return 1; }

/* One canvas pixel from a colour index, as Pillow's "P" image converts: the
 * palette's colour (an index beyond the table is black, as in Pillow's
 * zero-padded palette; no table at all reads the index as grey), alpha 0 for
 * the transparent index and 255 otherwise. */
static void gif_pixel(uint8_t *p, int idx, const ColorMapObject *cmap, int transparent) {
    if (!cmap) p[0] = p[1] = p[2] = (uint8_t)idx;
    else if (idx < cmap->ColorCount) p[0] = cmap->Colors[idx].Red, p[1] = cmap->Colors[idx].Green, p[2] = cmap->Colors[idx].Blue;
    else p[0] = p[1] = p[2] = 0;
    p[3] = idx == transparent ? 0 : 255;
}

/* Paints the first frame (raster of colour indices) as Pillow 9 decodes it:
 * onto a canvas of the logical screen, widened to the frame where it reaches
 * past it, filled with the transparent index if there is one and with index
 * 0 otherwise (so uncovered pixels are palette colour 0, opaque). */
static void gif_paint(const GifImageDesc *d, const GifByteType *raster, const ColorMapObject *cmap, int transparent,
                      kb_image *img) {
    int fill = transparent == NO_TRANSPARENT_COLOR ? 0 : transparent;
    for (int64_t i = 0; i < (int64_t)img->width * img->height; i++) gif_pixel(img->px + i * 4, fill, cmap, transparent);
    for (int y = 0; y < d->Height; y++) {
        int cy = d->Top + y;
        for (int x = 0; x < d->Width; x++) {
            uint8_t *p = img->px + ((size_t)cy * img->width + d->Left + x) * 4;
            gif_pixel(p, raster[(size_t)y * d->Width + x], cmap, transparent);
        }
    }
}

/* giflib leaves the error code 0 (no message) for some truncated headers. */
static const char *gif_error_text(int code) {
    const char *s = GifErrorString(code);
    return s ? s : "truncated or corrupt header";
}

/* giflib reads through gif_read_cb so that a failed read is told from the
 * file's end: giflib says D_GIF_ERR_READ_FAILED for both. */
typedef struct {
    FILE *fp;
    int read_errno;
} gif_input;

static int gif_read_cb(GifFileType *gif, GifByteType *buf, int n) {
    gif_input *in = gif->UserData;
    size_t got = fread(buf, 1, (size_t)n, in->fp);
    if (got < (size_t)n && ferror(in->fp) && !in->read_errno) in->read_errno = errno ? errno : EIO;
    return (int)got;
}

/* A giflib error: the machine's, or the file's content. */
static int gif_decode_error(const gif_input *in, int code, const char *path, kb_err *err) {
    if (in->read_errno) return read_failed(path, in->read_errno, err);
    if (code == D_GIF_ERR_NOT_ENOUGH_MEM) return kb_fail(err, "%s: out of memory decoding the GIF", path);
    return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: corrupt or truncated GIF: %s", path, gif_error_text(code));
}

/* Reads the rows of the current image; interlaced GIFs store them in four
 * passes (rows 0,8,16.. then 4,12.. then 2,6.. then 1,3..). */
static int gif_read_raster(GifFileType *gif, GifByteType *raster) {
    const GifImageDesc *d = &gif->Image;
    static const int first[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    for (int pass = 0; pass < (d->Interlace ? 4 : 1); pass++)
        for (int y = d->Interlace ? first[pass] : 0; y < d->Height; y += d->Interlace ? step[pass] : 1)
            if (DGifGetLine(gif, raster + (size_t)y * d->Width, d->Width) == GIF_ERROR) return -1;
    return 0;
}

/* The image whose descriptor was just read, onto the logical screen. */
static int gif_read_frame(GifFileType *gif, int transparent, const char *path, kb_image *img, kb_err *err) {
    const GifImageDesc *d = &gif->Image;
    const ColorMapObject *cmap = d->ColorMap ? d->ColorMap : gif->SColorMap; /* NULL: grey, as Pillow's "L" */
    if (d->Width < 1 || d->Height < 1 || d->Left < 0 || d->Top < 0)
        return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: GIF frame of %dx%d at (%d, %d)", path, d->Width, d->Height,
                          d->Left, d->Top);
    int w = gif->SWidth > d->Left + d->Width ? gif->SWidth : d->Left + d->Width; /* Pillow widens the canvas */
    int h = gif->SHeight > d->Top + d->Height ? gif->SHeight : d->Top + d->Height;
    GifByteType *raster = malloc((size_t)d->Width * d->Height);
    if (!raster) return kb_fail(err, "%s: out of memory", path);
    int rc = 0;
    if (gif_read_raster(gif, raster))
        rc = gif_decode_error(gif->UserData, gif->Error, path, err);
    else if (kb_image_alloc(img, w, h, 4, err))
        rc = kb_fail_wrap(err, "%s", path);
    else
        gif_paint(d, raster, cmap, transparent, img);
    free(raster);
    return rc;
}

/* Skips to the first image, remembering its transparent index from the
 * graphics control extension before it. Only that frame is decoded: later
 * frames of an animation are not used, and decoding them all (DGifSlurp)
 * would cost most of the time. */
static int gif_decode_first_frame(GifFileType *gif, const char *path, kb_image *img, kb_err *err) {
    int transparent = NO_TRANSPARENT_COLOR;
    GifRecordType type;
    while (DGifGetRecordType(gif, &type) != GIF_ERROR) {
        if (type == TERMINATE_RECORD_TYPE) return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: GIF holds no image", path);
        if (type == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(gif) == GIF_ERROR) break;
            return gif_read_frame(gif, transparent, path, img, err);
        }
        if (type != EXTENSION_RECORD_TYPE) continue;
        int code;
        GifByteType *ext;
        GraphicsControlBlock gcb;
        if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) break;
        if (code == GRAPHICS_EXT_FUNC_CODE && ext && DGifExtensionToGCB(ext[0], ext + 1, &gcb) == GIF_OK)
            transparent = gcb.TransparentColor;
        while (ext && DGifGetExtensionNext(gif, &ext) != GIF_ERROR) {
        }
        if (ext) break; /* DGifGetExtensionNext failed */
    }
    return gif_decode_error(gif->UserData, gif->Error, path, err);
}

int kb_gif_read(const char *path, kb_image *img, kb_err *err) {
    img->px = NULL;
    gif_input in = {fopen(path, "rb"), 0};
    if (!in.fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int gerr = 0;
    GifFileType *gif = DGifOpen(&in, gif_read_cb, &gerr);
    int rc = gif ? gif_decode_first_frame(gif, path, img, err) : gif_decode_error(&in, gerr, path, err);
    if (rc) kb_image_free(img);
    if (gif) DGifCloseFile(gif, &gerr); /* giflib does not close a stream it was given */
    fclose(in.fp);
    return rc;
}
#else
int kb_gif_supported(void) { return 0; }

int kb_gif_read(const char *path, kb_image *img, kb_err *err) {
    img->px = NULL;
    return kb_fail(err, "%s: this kindbench was built without giflib (install libgif-dev and re-run cmake)", path);
}
#endif

/* ---- by content ------------------------------------------------------ */

static int image_read_with(const char *path, grey16_rule grey16, kb_image *img, kb_err *err) {
    img->px = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[8] = {0};
    size_t n = fread(head, 1, sizeof head, fp);
    int read_errno = ferror(fp) ? errno : 0;
    fclose(fp);
    if (n < sizeof head && read_errno) return read_failed(path, read_errno, err);
    if (n >= 8 && !png_sig_cmp(head, 0, 8)) return png_read_with(path, grey16, img, err);
    if (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return kb_jpeg_read(path, img, err);
    if (n >= 6 && (!memcmp(head, "GIF87a", 6) || !memcmp(head, "GIF89a", 6))) return kb_gif_read(path, img, err);
    if (n == 0) return kb_fail_as(err, KB_ERR_BAD_DATA, "%s: empty file, expected a PNG, JPEG or GIF image", path);
    return kb_fail_as(err, KB_ERR_BAD_DATA,
                      "%s: not a PNG, JPEG or GIF image (unrecognised first bytes %02x %02x %02x %02x)", path, head[0],
                      head[1], head[2], head[3]);
}

int kb_image_read(const char *path, kb_image *img, kb_err *err) {
    return image_read_with(path, GREY16_HIGH_BYTE, img, err);
}

int kb_image_read_as_pil(const char *path, kb_image *img, kb_err *err) {
    return image_read_with(path, GREY16_CLIP, img, err);
}

/* ---- PNG writer -------------------------------------------------------- */

static void encode_png_rows(png_structp png, png_infop info, const kb_image *img, png_bytep *rows) {
    int type = img->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++) rows[y] = img->px + (size_t)y * img->width * img->channels;
    png_write_image(png, rows);
    png_write_end(png, NULL);
}

int kb_png_write(const char *path, const kb_image *img, kb_err *err) {
    if (img->channels != 1 && img->channels != 3)
        return kb_fail(err, "%s: PNG writer takes 1 or 3 channels, got %d", path, img->channels);
    png_state *st = calloc(1, sizeof *st);
    if (st) st->rows = malloc(sizeof(png_bytep) * (size_t)img->height);
    if (!st || !st->rows) {
        if (st) free(st);
        return kb_fail(err, "%s: out of memory starting the PNG encoder", path);
    }
    kb_atomic_file af;
    if (kb_atomic_open(&af, path, err)) {
        free(st->rows);
        free(st);
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!png || !info) {
        kb_fail(err, "%s: out of memory starting the PNG encoder", path);
    } else if (setjmp(png_jmpbuf(png))) {
        kb_fail(err, "%s: PNG encoding failed: %s", path, st->msg);
    } else {
        png_init_io(png, af.fp);
        encode_png_rows(png, info, img, st->rows);
        rc = 0;
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(st->rows);
    free(st);
    if (rc) {
        kb_atomic_abort(&af);
        return -1;
    }
    return kb_atomic_commit(&af, err);
}
