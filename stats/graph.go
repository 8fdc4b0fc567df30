package stats

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colorBackground = color.RGBA{255, 255, 255, 255}
	colorAxis       = color.RGBA{60, 60, 60, 255}
	colorGrid       = color.RGBA{225, 225, 225, 255}
	colorPass       = color.RGBA{76, 153, 76, 255}
	colorGreylist   = color.RGBA{230, 159, 0, 255}
	colorReject     = color.RGBA{204, 51, 51, 255}
)

// WritePNG draws the report as stacked bars, one per period: passed,
// greylisted and rejected recipients, with a legend and a scale.
func (r Report) WritePNG(w io.Writer, width, height int) error {
	if width < 200 || height < 150 {
		return fmt.Errorf("stats: graph of %dx%d is too small", width, height)
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), &image.Uniform{colorBackground}, image.Point{}, draw.Src)

	const left, right, top, bottom = 60, 15, 35, 40
	plot := image.Rect(left, top, width-right, height-bottom)
	var peak int64
	for _, p := range r.Periods {
		peak = max(peak, p.Total())
	}
	scale := niceCeiling(peak)

	// Grid lines and scale labels at fifths of the scale.
	for i := 0; i <= 5; i++ {
		y := plot.Max.Y - plot.Dy()*i/5
		fill(img, image.Rect(plot.Min.X, y, plot.Max.X, y+1), colorGrid)
		label(img, fmt.Sprint(scale*int64(i)/5), 4, y+4, colorAxis)
	}
	fill(img, image.Rect(plot.Min.X, plot.Min.Y, plot.Min.X+1, plot.Max.Y), colorAxis)
	fill(img, image.Rect(plot.Min.X, plot.Max.Y, plot.Max.X, plot.Max.Y+1), colorAxis)

	n := len(r.Periods)
	if n > 0 {
		slot := float64(plot.Dx()) / float64(n)
		barWidth := max(1, int(slot*0.8))
		labelEvery := max(1, n*70/plot.Dx()) // about 70 pixels per date label
		layout := "01-02"
		if r.Step < 24*time.Hour {
			layout = "15h"
		}
		for i, p := range r.Periods {
			x := plot.Min.X + int(slot*float64(i)+slot*0.1)
			y := plot.Max.Y
			for _, part := range []struct {
				n int64
				c color.RGBA
			}{{p.Pass, colorPass}, {p.Greylist, colorGreylist}, {p.Reject, colorReject}} {
				h := int(int64(plot.Dy()) * part.n / scale)
				fill(img, image.Rect(x, y-h, x+barWidth, y), part.c)
				y -= h
			}
			if i%labelEvery == 0 {
				label(img, p.Start.Format(layout), x, plot.Max.Y+15, colorAxis)
			}
		}
	}
	label(img, fmt.Sprintf("greymilter: recipients judged per %s, %s to %s", stepName(r.Step), r.From.Format("2006-01-02"), r.To.Format("2006-01-02")), left, 14, colorAxis)
	x := left
	for _, l := range []struct {
		text string
		c    color.RGBA
	}{{"passed", colorPass}, {"greylisted", colorGreylist}, {"rejected", colorReject}} {
		fill(img, image.Rect(x, 20, x+10, 30), l.c)
		label(img, l.text, x+14, 30, colorAxis)
		x += 14 + 7*len(l.text) + 16
	}
	return png.Encode(w, img)
}

func stepName(d time.Duration) string {
	if d >= 24*time.Hour {
		return "day"
	}
	return "hour"
}

// niceCeiling rounds n up to a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6
// or 8 times a power of ten, a multiple of 5) so that the scale's fifths are
// easy to read.
func niceCeiling(n int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{10, 15, 20, 25, 30, 40, 50, 60, 80} {
			if m*p%10 != 0 {
				continue
			}
			if v := m * p / 10; v >= n && v%5 == 0 {
				return v
			}
		}
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func label(img *image.RGBA, s string, x, y int, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
