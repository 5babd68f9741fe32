// TiO2 Segment: segment the current SEM image with tio2fiji's neural network, from ImageJ/Fiji.
//
// Part of tio2fiji. Runs the installed command line
//     tio2fiji segment IMAGE --out DIR --model default|PATH --separate auto|none|watershed --rois
// through exec() (no shell), then opens DIR/<name>_labels.tif (one integer per particle, calibrated)
// and loads DIR/<name>_rois.zip (one ROI per particle, its outline traced as ImageJ's wand does)
// into the ROI Manager, shown on the SEM image. DIR also receives <name>_mask.tif (0/255; run
// TiO2_Particle_Analysis.ijm on it) and <name>_scores.csv. The label image and the ROIs cover the
// analysed area: the image without the microscope's data bar at the bottom, from the top-left
// corner, so the ROIs sit on the particles of the SEM image.
//
// Needs tio2fiji installed (see its README); nothing else in ImageJ. The image is read from its
// file; an unsaved or modified image is first saved as a TIFF copy into the output folder.
//
// Options (a dialog when run from the menu, or the argument of runMacro in ImageJ's key=[value]
// form; the dialog remembers the last values in ImageJ's preferences):
//   exe=[PATH]              the tio2fiji executable, e.g. /home/me/tio2fiji/.venv/bin/tio2fiji
//                           ("tio2fiji" if it is on the PATH ImageJ was started with)
//   model=[default|PATH]    "default" = the model shipped with tio2fiji, or a checkpoint (.pt)
//   separate=auto|none|watershed   splitting of touching particles
//   out=[DIR]               output folder (default: a "tio2fiji" folder beside the image)
//   rois=1|0                write and load the ROI set (default 1)
//   probability=1|0         also save the probability map (default 0)
//
// Install: `tio2fiji install-macros /path/to/Fiji.app` (copies the three macros to
// Fiji.app/plugins/Macros: Plugins > Macros > TiO2 Segment, kept across restarts); or
// Plugins > Macros > Install... (this file) until ImageJ quits.
// Batch use: runMacro("/path/TiO2_Segment.ijm", "exe=[/path/tio2fiji] model=default separate=auto");

macro "TiO2 Segment" {
    result = tio2Segment(getArgument());
    return result;
}

function stemOf(name) {
    dot = lastIndexOf(name, ".");
    if (dot > 0) return substring(name, 0, dot);
    return name;
}

function withSlash(dir) {
    dir = replace(dir, "\\\\", "/");
    if (!endsWith(dir, "/")) dir = dir + "/";
    return dir;
}

function tio2Segment(args) {
    if (nImages == 0)
        exit("TiO2 Segment: open an SEM image first (File > Open...).");
    original = getImageID();
    title = getTitle();
    imageDir = getInfo("image.directory");
    imageFile = getInfo("image.filename");
    // ("" + ...: a user function first in a string expression is parsed as a number)
    if (imageDir != "") defaultOut = "" + withSlash(imageDir) + "tio2fiji";
    else defaultOut = "" + withSlash(getDirectory("temp")) + "tio2fiji";

    exe = call("ij.Prefs.get", "tio2fiji.executable", "tio2fiji");
    model = call("ij.Prefs.get", "tio2fiji.model", "default");
    separate = call("ij.Prefs.get", "tio2fiji.separate", "auto");
    outDir = defaultOut;
    rois = 1;
    probability = 0;
    if (args == "") {
        Dialog.create("TiO2 Segment");
        Dialog.addMessage("Segments " + title + " with tio2fiji's U-Net (tio2fiji segment).");
        Dialog.addFile("tio2fiji executable", exe);
        Dialog.addString("Model (\"default\" or a .pt file)", model, 40);
        Dialog.addChoice("Separate touching particles", newArray("auto", "none", "watershed"), separate);
        Dialog.addDirectory("Output folder", outDir);
        Dialog.addCheckbox("Load the particles into the ROI Manager", true);
        Dialog.addCheckbox("Also save the probability map", false);
        Dialog.show();
        exe = Dialog.getString();
        model = Dialog.getString();
        separate = Dialog.getChoice();
        outDir = Dialog.getString();
        rois = Dialog.getCheckbox();
        probability = Dialog.getCheckbox();
    } else {
        // ij.Macro.getValue reads key=value and key=[value with spaces]
        exe = call("ij.Macro.getValue", args, "exe", exe);
        model = call("ij.Macro.getValue", args, "model", model);
        separate = call("ij.Macro.getValue", args, "separate", separate);
        outDir = call("ij.Macro.getValue", args, "out", outDir);
        rois = parseInt(call("ij.Macro.getValue", args, "rois", "1"));
        probability = parseInt(call("ij.Macro.getValue", args, "probability", "0"));
    }
    if (separate != "auto" && separate != "none" && separate != "watershed")
        exit("TiO2 Segment: separate must be auto, none or watershed, not " + separate);
    if (model == "") model = "default";
    if (model != "default" && !File.exists(model))
        exit("TiO2 Segment: model file " + model + " does not exist.\nGive a .pt checkpoint or \"default\" (the model shipped with tio2fiji).");
    if (indexOf(exe, "/") >= 0 || indexOf(exe, "\\") >= 0) {
        if (!File.exists(exe))
            exit("TiO2 Segment: " + exe + " does not exist.\nGive the tio2fiji executable, e.g. /path/to/tio2fiji/.venv/bin/tio2fiji\n(`which tio2fiji` in the environment where tio2fiji is installed prints it).");
    }
    call("ij.Prefs.set", "tio2fiji.executable", exe);
    call("ij.Prefs.set", "tio2fiji.model", model);
    call("ij.Prefs.set", "tio2fiji.separate", separate);

    outDir = withSlash(outDir);
    File.makeDirectory(outDir);
    if (!File.isDirectory(outDir))
        exit("TiO2 Segment: cannot create the output folder " + outDir + "; choose another one.");

    // the image as a file: its own, or a TIFF copy when it has none or was modified
    if (imageDir != "" && imageFile != "" && !is("changes") && File.exists("" + withSlash(imageDir) + imageFile)) {
        imagePath = "" + withSlash(imageDir) + imageFile;
    } else {
        stem = stemOf(replace(title, "[^A-Za-z0-9._-]", "_"));
        imagePath = outDir + stem + ".tif";
        wasBatch = is("batch mode");
        setBatchMode(true);
        run("Select None");
        run("Duplicate...", "title=tio2fiji-input");
        saveAs("Tiff", imagePath);
        close();
        if (!wasBatch) setBatchMode(false);
        selectImage(original);
        imageFile = stem + ".tif";
    }
    stem = stemOf(File.getName(imagePath));
    maskPath = outDir + stem + "_mask.tif";
    labelsPath = outDir + stem + "_labels.tif";
    roisPath = outDir + stem + "_rois.zip";
    // so that a failed run cannot show an old result
    if (File.exists(labelsPath)) deleted = File.delete(labelsPath);
    if (File.exists(roisPath)) deleted = File.delete(roisPath);

    flags = "";
    if (rois == 1) flags = flags + " --rois";
    if (probability == 1) flags = flags + " --probability";
    print("TiO2 Segment: " + exe + " segment " + imagePath + " --out " + outDir + " --model " + model
        + " --separate " + separate + flags);
    showStatus("TiO2 Segment: running tio2fiji segment on " + title + " ...");
    if (rois == 1 && probability == 1)
        output = exec(exe, "segment", imagePath, "--out", outDir, "--model", model, "--separate", separate, "--rois", "--probability");
    else if (rois == 1)
        output = exec(exe, "segment", imagePath, "--out", outDir, "--model", model, "--separate", separate, "--rois");
    else if (probability == 1)
        output = exec(exe, "segment", imagePath, "--out", outDir, "--model", model, "--separate", separate, "--probability");
    else
        output = exec(exe, "segment", imagePath, "--out", outDir, "--model", model, "--separate", separate);
    if (lengthOf(output) > 0) print(output);
    if (!File.exists(labelsPath))
        exit("TiO2 Segment: tio2fiji did not write " + labelsPath + ".\nIts output:\n" + output
            + "\nCheck the tio2fiji executable path (" + exe + ") and the model.");

    open(labelsPath);
    labelsImage = getImageID();
    List.setCommands;
    if (List.get("glasbey_on_dark") != "") {
        run("glasbey_on_dark");  // Fiji's label LUT
    } else {
        randomLabelLut();  // stock ImageJ has none: neighbouring labels get unrelated colours
    }
    setMinAndMax(0, 255);  // label k shows with LUT entry k (labels above 255 saturate)
    if (getValue("Max") > 255) resetMinAndMax();
    nRois = 0;
    if (rois == 1) {
        if (!File.exists(roisPath))
            exit("TiO2 Segment: tio2fiji did not write " + roisPath + ".\nIts output:\n" + output);
        roiManager("reset");
        roiManager("Open", roisPath);
        nRois = roiManager("count");
        selectImage(original);
        if (nRois > 0) roiManager("Show All without labels");
    }
    print("TiO2 Segment: " + nRois + " particles in the ROI Manager; label image " + labelsPath);
    print("  mask for TiO2 Particle Analysis: " + maskPath);
    showStatus("TiO2 Segment: done");
    return "labels=" + labelsPath + ";mask=" + maskPath + ";rois=" + roisPath + ";n_rois=" + nRois
        + ";labels_title=" + getTitleOf(labelsImage);
}

function randomLabelLut() {
    random("seed", 7);
    reds = newArray(256);
    greens = newArray(256);
    blues = newArray(256);
    for (i = 1; i < 256; i++) {
        reds[i] = 55 + floor(200 * random());
        greens[i] = 55 + floor(200 * random());
        blues[i] = 55 + floor(200 * random());
    }
    setLut(reds, greens, blues);
}

function getTitleOf(id) {
    current = getImageID();
    selectImage(id);
    t = getTitle();
    selectImage(current);
    return t;
}
