// TiO2 Particle Analysis: ImageJ's Analyze Particles with every shape measurement, BioVoxxel's
// FeretAR, Compact and Extent, and the thesis's distribution test (ultimate points + BioVoxxel's
// "Particle Distribution (2D)"), in the plain ImageJ macro language: it runs in a stock ImageJ 1.x
// or Fiji without the BioVoxxel Toolbox.
//
// Part of tio2fiji. The same numbers come from Python: tio2fiji.particles.measure (columns) and
// tio2fiji.distribution.biovoxxel_test (test); tests/test_macros.py holds them equal.
// Definitions: docs/imagej-spec.md (ImageJ 1.x and BioVoxxel, read from their sources).
//
// Input: the current image, a binary 8-bit mask (0 = background, 255 = particle), e.g. the
// *_mask.tif written by `tio2fiji segment`. The macro works on a copy; the image is not changed.
//
// Output:
//   Results table  one row per particle: Area, X, Y, Perim., BX, BY, Width, Height, Major, Minor,
//                  Angle, Circ., Feret, FeretX, FeretY, FeretAngle, MinFeret, AR, Round, Solidity
//                  (ImageJ), then FeretAR = Feret/MinFeret, Compact = sqrt(4*Area/PI)/Major and
//                  Extent = Area/(Width*Height) (BioVoxxel's Extended Particle Analyzer).
//   Log            a summary, and the distribution test as BioVoxxel prints it.
//   return value   "key=value;..." (for runMacro): particle count, unit, and the test's numbers.
//
// Options (a dialog when run from the menu; or the argument of runMacro, space separated):
//   data_bar=N            leave out the bottom N rows (an SEM data bar); default 0
//   include=1|0           "Include holes" (default 0)
//   exclude=1|0           "Exclude on edges" (default 0)
//   distribution=1|0      run the distribution test (default 1)
//   statistic=median|mean, alpha=0.05|0.01|0.001, java_student_bug=1|0
//                         BioVoxxel's settings, as in BioVoxxel_Particle_Distribution.ijm
//
// Side effects, as BioVoxxel's own tools: "Black background" is switched on (so 255 is the
// particle), Analyze > Set Measurements is set to area, centroid, perimeter, bounding rectangle,
// fit ellipse, shape descriptors and Feret's diameter with 9 decimals, and the Results table is
// replaced.
//
// The distribution test reproduces BioVoxxel's Particle Distribution (2D) with its defaults
// (centroid NND, no size limits): Analyze Particles on the ultimate points of every particle
// (include/exclude apply to the measurements only), A = the analysed image's width x height in
// pixels, centroids in calibrated units. It is reproduced to check the
// thesis, not recommended as a test (see docs/imagej-spec.md B and C, and `tio2fiji distribution
// --method clark-evans` for a sound one). Its statistics are the code of
// BioVoxxel_Particle_Distribution.ijm, copied so that this file installs on its own; the test
// suite checks that the two copies stay identical.
//
// Install: `tio2fiji install-macros /path/to/Fiji.app` (copies the three macros to
// Fiji.app/plugins/Macros: Plugins > Macros > TiO2 Particle Analysis, kept across restarts); or
// Plugins > Macros > Install... (this file) until ImageJ quits. Batch use:
//   runMacro("/path/TiO2_Particle_Analysis.ijm", "data_bar=64 include=0 exclude=0");

macro "TiO2 Particle Analysis" {
    result = tio2ParticleAnalysis(getArgument());
    return result;
}

function argValue(args, key, fallback) {
    parts = split(args, " ");
    for (i = 0; i < parts.length; i++) {
        if (startsWith(parts[i], key + "="))
            return substring(parts[i], lengthOf(key) + 1);
    }
    return fallback;
}

function fmt(x) {
    return String.format("%.17g", x);
}

function tio2ParticleAnalysis(args) {
    if (nImages == 0)
        exit("TiO2 Particle Analysis: open a binary mask first (e.g. the *_mask.tif of tio2fiji segment).");
    dataBar = 0;
    include = 0;
    exclude = 0;
    distribution = 1;
    statistic = "median";
    alpha = 0.05;
    studentBug = 1;
    if (args == "") {
        Dialog.create("TiO2 Particle Analysis");
        Dialog.addMessage("Analyze Particles with all shape measurements + BioVoxxel's FeretAR, Compact, Extent;\n"
            + "then BioVoxxel's Particle Distribution (2D) test on the ultimate points.");
        Dialog.addNumber("Data bar rows at the bottom to leave out", 0);
        Dialog.addCheckbox("Include holes", false);
        Dialog.addCheckbox("Exclude particles on edges", false);
        Dialog.addCheckbox("Distribution test (ultimate points + Particle Distribution 2D)", true);
        Dialog.addChoice("Statistic", newArray("median", "mean"), "median");
        Dialog.addChoice("Confidence", newArray("95%", "99%", "99.9%"), "95%");
        Dialog.addCheckbox("Student branch as the Java plugin (integer 2/n)", true);
        Dialog.show();
        dataBar = Dialog.getNumber();
        include = Dialog.getCheckbox();
        exclude = Dialog.getCheckbox();
        distribution = Dialog.getCheckbox();
        statistic = Dialog.getChoice();
        confidence = Dialog.getChoice();
        if (confidence == "99%") alpha = 0.01;
        if (confidence == "99.9%") alpha = 0.001;
        studentBug = Dialog.getCheckbox();
    } else {
        dataBar = parseInt(argValue(args, "data_bar", "0"));
        include = parseInt(argValue(args, "include", "0"));
        exclude = parseInt(argValue(args, "exclude", "0"));
        distribution = parseInt(argValue(args, "distribution", "1"));
        statistic = argValue(args, "statistic", "median");
        alpha = parseFloat(argValue(args, "alpha", "0.05"));
        studentBug = parseInt(argValue(args, "java_student_bug", "1"));
    }
    if (bitDepth() != 8 || !is("binary"))
        exit("TiO2 Particle Analysis: " + getTitle() + " is not a binary 8-bit mask (values 0 and 255).\n"
            + "Threshold it first (Image > Adjust > Threshold..., Apply), or open tio2fiji's *_mask.tif.");
    if (isNaN(dataBar) || dataBar < 0 || dataBar >= getHeight())
        exit("TiO2 Particle Analysis: data_bar must be between 0 and " + (getHeight() - 1) + " rows.");
    if (statistic != "median" && statistic != "mean")
        exit("TiO2 Particle Analysis: statistic must be median or mean, not " + statistic);

    title = getTitle();
    original = getImageID();
    w = getWidth();
    h = getHeight() - dataBar;
    getPixelSize(unit, pw, ph);
    if (unit == " " || unit == "") unit = "pixels";
    wasBatch = is("batch mode");
    setBatchMode(true);
    setOption("BlackBackground", true);  // 255 = particle, for Analyze Particles and the EDM
    run("Set Measurements...", "area centroid perimeter bounding fit shape feret's redirect=None decimal=9");

    // the analysed area, as a copy with a normal LUT (pixel values unchanged)
    makeRectangle(0, 0, w, h);
    run("Duplicate...", "title=tio2-analysed");
    run("Select None");
    if (is("Inverting LUT")) run("Invert LUT");
    work = getImageID();
    selectImage(original);
    run("Select None");

    // ---- ultimate points and their centroids (first, because Analyze Particles reuses Results)
    nUep = 0;
    if (distribution == 1) {
        selectImage(work);
        run("Duplicate...", "title=tio2-uep");
        before = nImages;
        run("Ultimate Points");
        // EDM output types other than "Overwrite" (Process > Binary > Options) open a new image
        if (nImages > before) {
            uepOut = getImageID();
            selectImage("tio2-uep");
            close();
            selectImage(uepOut);
        }
        if (bitDepth() == 32)
            setThreshold(1e-9, 1e30);
        else
            setThreshold(1, pow(2, bitDepth()) - 1);
        run("Convert to Mask");
        run("Analyze Particles...", "size=0-Infinity show=Nothing display clear");
        nUep = nResults;
        uepX = newArray(nUep);
        uepY = newArray(nUep);
        for (i = 0; i < nUep; i++) {
            uepX[i] = getResult("X", i);
            uepY[i] = getResult("Y", i);
        }
        close();
    }

    // ---- particles: Analyze Particles + BioVoxxel's columns
    selectImage(work);
    options = "size=0-Infinity show=Nothing display clear";
    if (include == 1) options = options + " include";
    if (exclude == 1) options = options + " exclude";
    run("Analyze Particles...", options);
    n = nResults;
    totalArea = 0;
    for (i = 0; i < n; i++) {
        area = getResult("Area", i);
        totalArea += area;
        setResult("FeretAR", i, getResult("Feret", i) / getResult("MinFeret", i));
        setResult("Compact", i, sqrt(4 * area / PI) / getResult("Major", i));
        setResult("Extent", i, area / (getResult("Width", i) * getResult("Height", i)));
    }
    if (n > 0) updateResults();
    close();

    print("TiO2 Particle Analysis of " + title + ": " + w + " x " + h + " pixels analysed"
        + dataBarNote(dataBar) + ", pixel size " + pw + " " + unit);
    print("  Analyze Particles (size 0-Infinity" + optionNote(include, " include holes")
        + optionNote(exclude, " exclude on edges") + "): " + n + " particles");
    if (n > 0)
        print("  total area " + d2s(totalArea, 3) + " " + unit + "^2, mean area "
            + d2s(totalArea / n, 3) + " " + unit + "^2");
    print("  columns: ImageJ's shape measurements + FeretAR, Compact, Extent (Results table)");
    ret = "particles=" + n + ";unit=" + unit + ";pixel_width=" + fmt(pw) + ";width=" + w + ";height=" + h;

    // ---- distribution test
    if (distribution == 1) {
        print("Particle Distribution (2D), BioVoxxel's procedure, on the ultimate points of " + title + ":");
        if (nUep < 2) {
            print("  --->   not tested: " + nUep + " ultimate point(s); the test needs at least 2");
            ret = ret + ";n=" + nUep + ";classification=too few points";
        } else {
            ret = ret + ";" + particleDistribution2D(uepX, uepY, nUep, w * h, statistic, alpha, studentBug);
        }
    }
    if (!wasBatch) setBatchMode(false);
    selectImage(original);
    return ret;
}

function dataBarNote(rows) {
    if (rows > 0) return " (bottom " + rows + " rows left out)";
    return "";
}

function optionNote(flag, text) {
    if (flag == 1) return "," + text;
    return "";
}

// BioVoxxel's Particle Distribution (2D), centroid NND. cx, cy: the n centroids of the ultimate
// points' particles (calibrated); imageArea: width x height in pixels. Prints BioVoxxel's log
// lines and returns "key=value;..." with full precision.
function particleDistribution2D(cx, cy, n, imageArea, statistic, alpha, studentBug) {
    // ---- begin: copied from BioVoxxel_Particle_Distribution.ijm (critical values)
    if (abs(alpha - 0.05) < 1e-12) {
        criticalF = newArray(2.978237016, 1.840871688, 1.53431418, 1.391719552, 1.158655374, 1.109688288, 1.076352036, 1.061912029, 1.053397886, 1.047627319);
        criticalT = newArray(1.812461102, 1.697260851, 1.670648865, 1.660234327, 1.647906854, 1.646378818, 1.645615867, 1.645361708, 1.645234659, 1.645158438);
        chosenCI = "95%";
    } else if (abs(alpha - 0.01) < 1e-12) {
        criticalF = newArray(4.849146802, 2.385967353, 1.836259361, 1.597669125, 1.231664935, 1.158625448, 1.109682472, 1.088680123, 1.076352997, 1.068021936);
        criticalT = newArray(2.763769458, 2.457261531, 2.390119457, 2.364217356, 2.333828914, 2.330082625, 2.328213787, 2.327591515, 2.32728048, 2.327093897);
        chosenCI = "99%";
    } else if (abs(alpha - 0.001) < 1e-12) {
        criticalF = newArray(8.753866276, 3.217090322, 2.252265545, 1.867401382, 1.319136791, 1.216098723, 1.148287469, 1.1194961, 1.102684079, 1.091358502);
        criticalT = newArray(4.143700493, 3.385184866, 3.231709121, 3.173739481, 3.106611618, 3.098402156, 3.09431229, 3.092951196, 3.092271061, 3.091863111);
        chosenCI = "99.9%";
    } else {
        exit("alpha must be 0.05, 0.01 or 0.001, not " + alpha);
    }
    bins = newArray(10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000);
    // ---- end: copied

    // ---- begin: copied from BioVoxxel_Particle_Distribution.ijm (steps 2 to 7)
    E = 0.5 * sqrt(imageArea / n);
    print("Theoretical random nearest neighbor distance = " + fmt(E));
    print("Variance = " + fmt(E));
    print("StdDev = " + fmt(sqrt(E)));

    // ---- 3. nearest-neighbour distances, brute force as BioVoxxel
    nnd = newArray(n);
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            d = sqrt(pow(cx[i] - cx[j], 2) + pow(cy[i] - cy[j], 2));
            if ((i == 0 && j == 1) || (i != 0 && j == 0))
                nnd[i] = d;
            else if (i != j && nnd[i] > d)
                nnd[i] = d;
        }
    }
    nnSum = 0;
    for (i = 0; i < n; i++) nnSum += nnd[i];
    nnMean = nnSum / n;

    // ---- 4. median and the spreads around mean and median (over the sorted distances)
    Array.sort(nnd);
    if (n % 2 == 0)
        nnMedian = (nnd[n / 2] + nnd[n / 2 - 1]) / 2;
    else
        nnMedian = nnd[floor(n / 2)];
    diffMean = 0;
    diffMedian = 0;
    for (i = 0; i < n; i++) {
        diffMean += pow(nnd[i] - nnMean, 2);
        diffMedian += pow(nnd[i] - nnMedian, 2);
    }
    varMean = diffMean / n;
    varMedian = diffMedian / n;
    print("Measured average nearest neighbor distance = " + fmt(nnMean));
    print("Variance (mean) = " + fmt(varMean));
    print("StdDev (mean) = " + fmt(sqrt(varMean)));
    print("Measured median nearest neighbor distance = " + fmt(nnMedian));
    print("Variance (median) = " + fmt(varMedian));
    print("StdDev (median) = " + fmt(sqrt(varMedian)));
    print("--------------------------------------------------------------------------");
    print("Sample size n = " + n);

    if (statistic == "median") {
        testValue = nnMedian;
        testVariance = varMedian;
    } else {
        testValue = nnMean;
        testVariance = varMean;
    }

    // ---- 5. F test picks Welch or Student; n's bins are 11-30, 31-60, ..., >= 5001
    F = maxOf(E, testVariance) / minOf(E, testVariance);
    nBin = -1;
    for (k = 0; k < bins.length; k++)
        if (n - 1 >= bins[k]) nBin = k;
    if (nBin >= 0) critF = criticalF[nBin]; else critF = NaN;
    if (n >= 11 && F >= critF) {
        test = "Welch's t-test";
        T = abs(E - testValue) / (sqrt((E / n) + (testVariance / n)));
        df = floor((pow((E / n) + (testVariance / n), 2)) / ((pow(E / n, 2) / (n - 1)) + (pow(testVariance / n, 2) / (n - 1))));
        print("d.f. = " + df);
        print("t = " + fmt(T) + " (Welch's t-test)");
    } else {
        test = "Student's t-test";
        if (studentBug == 1) twoOverN = floor(2 / n); else twoOverN = 2 / n;  // Java: int 2/n
        T = (abs(E - testValue)) / (sqrt(0.5 * (E + testVariance)) * sqrt(twoOverN));
        df = (2 * n) - 2;
        print("d.f.: " + df);
        print("t = " + fmt(T) + " (Student's t-test)");
    }

    // ---- 6. one-sided critical t from df's bin; 0 below df = 10
    criticalTValue = 0;
    for (k = 0; k < bins.length; k++)
        if (df >= bins[k]) criticalTValue = criticalT[k];
    print("critical t-value = " + fmt(criticalTValue));
    print("confidence interval = " + chosenCI);
    print("--------------------------------------------------------------------------");

    // ---- 7. classification
    significant = 0;
    classification = "random";
    if (T >= criticalTValue) {
        significant = 1;
        classification = "significant, no direction";
        if (testValue < E) {
            classification = "clustering";
            print("  --->   clustering particles");
        } else if (testValue > E) {
            classification = "self-avoiding";
            print("  --->   self-avoiding particles");
        }
        print("significant different from random distribution with p < " + alpha);
    } else {
        print("  --->   random particle distribution");
        print("no significant difference to random distribution (p > " + alpha + ")");
    }
    print("according to " + statistic + " of the centroid NND distance");
    // ---- end: copied
    print("--------------------------------------------------------------------------");

    return "n=" + n + ";area=" + fmt(imageArea) + ";expected_nnd=" + fmt(E) + ";variance_random=" + fmt(E)
        + ";observed_nnd=" + fmt(testValue) + ";mean_nnd=" + fmt(nnMean) + ";median_nnd=" + fmt(nnMedian)
        + ";variance=" + fmt(testVariance) + ";F=" + fmt(F) + ";critical_F=" + fmt(critF) + ";test=" + test
        + ";statistic=" + fmt(T) + ";df=" + fmt(df) + ";critical_value=" + fmt(criticalTValue)
        + ";alpha=" + alpha + ";significant=" + significant + ";classification=" + classification;
}
