#!/bin/sh
# Regenerate the README's screenshots of the two ImageJ macros: ImageJ 1.x with its GUI on a
# virtual display (Xvfb, with the twm window manager for title bars), the macros run on a
# bundled example, and ImageJ's own Capture Screen. Needs: java, xvfb-run, twm, ImageJ
# (/usr/share/java/ij.jar or $TIO2FIJI_IJ_JAR) and tio2fiji installed in .venv (the Segment
# macro calls `.venv/bin/tio2fiji segment`). Run from the repository root:
#     sh docs/screenshots/make_screenshots.sh
set -e
ROOT=$(pwd)
IJ_JAR=${TIO2FIJI_IJ_JAR:-/usr/share/java/ij.jar}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/home"
cat > "$WORK/twmrc" <<'TWM'
RandomPlacement
UsePPosition "on"
NoGrabServer
BorderWidth 1
TitleFont "fixed"
ResizeFont "fixed"
MenuFont "fixed"
IconFont "fixed"
IconManagerFont "fixed"
TWM
# where ImageJ opens its own windows (ImageJ, Log, Results, ROI Manager): its preferences file
prefs() {  # $1: the Log window's location, width and height, e.g. "1050,0 390 770"
    mkdir -p "$WORK/home/.imagej"
    set -- $1
    printf '.ij.x=1020\n.ij.y=770\n.log.loc=%s\n.log.width=%s\n.log.height=%s\n.results.loc=0,455\n.results.width=1045\n.results.height=440\n.manager.loc=1050,0\n' \
        "$1" "$2" "$3" > "$WORK/home/.imagej/IJ_Prefs.txt"
}

cat > "$WORK/analysis.ijm" <<IJM
open("$ROOT/examples/data/SEM/1908248.tif");
run("Set... ", "zoom=50"); setLocation(0, 0);
open("$ROOT/examples/data/masks/1908248_m.tif");
run("Properties...", "unit=nm pixel_width=7.34375 pixel_height=7.34375");
run("Set... ", "zoom=50"); setLocation(525, 0);
r = runMacro("$ROOT/tio2fiji/macros/TiO2_Particle_Analysis.ijm", "data_bar=64");
wait(2000);
run("Capture Screen");
saveAs("PNG", "$ROOT/docs/screenshots/particle_analysis.png");
close();
IJM

cat > "$WORK/segment.ijm" <<IJM
open("$ROOT/examples/data/SEM/1908252.tif");
sem = getImageID();
run("Set... ", "zoom=50"); setLocation(0, 0);
r = runMacro("$ROOT/tio2fiji/macros/TiO2_Segment.ijm", "exe=[$ROOT/.venv/bin/tio2fiji] model=default separate=auto out=[$WORK/out]");
selectImage(substring(r, indexOf(r, "labels_title=") + 13));
run("Set... ", "zoom=50"); setLocation(525, 0);
selectImage(sem); roiManager("Show All without labels");
wait(2000);
run("Capture Screen");
saveAs("PNG", "$ROOT/docs/screenshots/segment.png");
close();
IJM

for m in analysis segment; do
    if [ $m = analysis ]; then prefs "1050,0 390 770"; else prefs "0,455 1045 330"; fi
    printf '%s\nrun("Quit");\n' "$(cat "$WORK/$m.ijm")" > "$WORK/$m-quit.ijm"
    xvfb-run -a -s "-screen 0 1440x900x24" sh -c "twm -f '$WORK/twmrc' & sleep 1; \
        java -Duser.home='$WORK/home' -jar '$IJ_JAR' -macro '$WORK/$m-quit.ijm'"
done
ls -l "$ROOT/docs/screenshots"/*.png
